/**
 * `npm run bench`: the real app against a bare Fastify route and against the hand-written
 * reference (bench/hand-written-server.ts; for bullmq bench/hand-written-bullmq.ts), then a
 * check that every accepted message is in each log exactly once. See the README's
 * "Performance" section. Exits non-zero when a log check fails (or a server dies).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { cpus, loadavg, tmpdir, totalmem, type as osType, release } from 'node:os'
import { join, resolve } from 'node:path'
import { backendByName } from './backends.js'
import { expectedMessageList, runCompare, type CompareResult } from './compare.js'
import { formatCompare } from './compare-format.js'
import { MESSAGE_PATTERN, type RunContext } from './context.js'
import { describeLogCheck, verifyLog, type LogCheck } from './log-verify.js'
import { parseOptions, USAGE, type BenchOptions } from './options.js'
import { formatOverload, OVERLOAD_ENV, runOverload, type OverloadResult } from './overload.js'
import { formatProfileSummary, readProfile, summarizeProfile, type ProfileSummary } from './profile-summary.js'
import { startApp, startBare, startHandWritten, stopServer, type ServerUnderTest } from './servers.js'
import { int } from './report.js'
import { formatThreads, runThreads } from './threads.js'

const ROOT = resolve(import.meta.dirname, '..')

/** Where the app (and its workers) are run from: this checkout, or `--app DIR` (an earlier build). */
function appRoot(options: BenchOptions): string {
  return options.appRoot === undefined ? ROOT : resolve(options.appRoot)
}

function machine() {
  const cpu = cpus()
  return {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${osType()} ${release()}`,
    node: process.version,
    loadAverageAtStart: loadavg().map((value) => Number(value.toFixed(2))),
  }
}

async function main(): Promise<number> {
  let options: BenchOptions | 'help'
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`)
    return 2
  }
  if (options === 'help') {
    console.log(USAGE)
    return 0
  }
  const info = machine()
  const dir = mkdtempSync(join(tmpdir(), 'bench-'))
  if (options.mode === 'threads') return threadsMode(options, info, dir)
  const backendDef = backendByName(options.backend)
  const runId = randomBytes(4).toString('hex')
  const logFile = join(dir, 'log.txt')
  const startedAt = new Date()
  const resultsDir = join(ROOT, 'bench/results')
  mkdirSync(resultsDir, { recursive: true })
  const profileDir = options.profile ? join(resultsDir, `profiles-${runId}`) : undefined
  console.log(
    `npm run bench (${options.mode}${options.quick ? ', quick' : ''}), backend ${backendDef.name}: ${info.cores} × ${info.cpu}, ` +
      `Node ${info.node}, load average ${info.loadAverageAtStart.join(' ')}`,
  )

  const baseEnv = { LOG_LEVEL: options.logLevel, LOG_FILE: logFile }
  const appEnv: Record<string, string> = {
    ...baseEnv,
    SHUTDOWN_TIMEOUT_MS: '60000',
    ...(options.mode === 'overload'
      ? // The app's own dist (another build's with --app): slow-task.ts patches the module instance it runs.
        { ...OVERLOAD_ENV, BENCH_TASK_DELAY_MS: String(options.taskDelayMs), BENCH_APP_DIST: join(appRoot(options), 'dist') }
      : {}),
    ...options.env,
  }
  const backend = await backendDef.prepare({ dir, root: appRoot(options), appEnv, workers: options.workers })
  Object.assign(appEnv, backend.env)
  const context: RunContext = { options, root: ROOT, dir, logFile, runId, backendName: backendDef.name, backend, appEnv, profileDir }
  const profileFlags = (name: string) => (profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, name)}`])

  let app: ServerUnderTest | undefined
  let bare: ServerUnderTest | undefined
  let handWritten: ServerUnderTest | undefined
  const handWrittenLog = join(dir, 'hand-written-log.txt')
  let compare: CompareResult | undefined
  let overload: OverloadResult | undefined
  let failure: string | undefined
  try {
    const appFlags = [...profileFlags('app'), ...(options.mode === 'overload' ? ['--import', join(ROOT, 'dist-bench/slow-task.js')] : [])]
    app = await startApp({ root: appRoot(options), env: appEnv, nodeFlags: appFlags })
    if (options.mode === 'compare') {
      bare = await startBare({ root: ROOT, env: baseEnv, nodeFlags: profileFlags('bare') })
      handWritten = await startHandWritten({
        root: ROOT,
        // For bullmq: the same redis-server, a queue of its own.
        env: { ...baseEnv, LOG_FILE: handWrittenLog, ...(backend.env.REDIS_URL === undefined ? {} : { REDIS_URL: backend.env.REDIS_URL }) },
        nodeFlags: profileFlags('hand-written'),
        backend: backendDef.name,
        workers: options.workers,
      })
      compare = await runCompare(context, { app, bare, handWritten, handWrittenLog })
    } else {
      overload = await runOverload(context, app)
    }
  } catch (error) {
    failure = (error as Error).stack ?? String(error)
  } finally {
    // The app drains what is left and closes the log file (flush + fsync) before it exits.
    await Promise.all([stopServer(app, 120_000), stopServer(bare), stopServer(handWritten, 120_000)])
    await backend.stop()
  }

  // The logs, line by line, once their servers are gone: nothing can be written after this.
  let logCheck: LogCheck | undefined
  let handWrittenLogCheck: LogCheck | undefined
  const appLog = compare?.logs.app
  if (appLog !== undefined || overload !== undefined) {
    logCheck = verifyLog(readFileSyncSafe(logFile), {
      expectedLines: appLog?.expectedLines ?? overload?.expectedLines ?? 0,
      messagePattern: MESSAGE_PATTERN,
      expectedMessages: appLog !== undefined ? expectedMessageList(appLog) : overload?.accepted,
    })
  }
  const handLog = compare?.logs['hand-written']
  if (handLog !== undefined) {
    handWrittenLogCheck = verifyLog(readFileSyncSafe(handWrittenLog), {
      expectedLines: handLog.expectedLines,
      messagePattern: MESSAGE_PATTERN,
      expectedMessages: expectedMessageList(handLog),
    })
  }

  if (compare !== undefined) console.log(`\n${formatCompare(compare)}`)
  if (overload !== undefined) console.log(`\n${formatOverload(overload)}`)
  for (const [name, check, account] of [
    ['app', logCheck, appLog],
    ['hand-written', handWrittenLogCheck, handLog],
  ] as const) {
    if (check === undefined) continue
    console.log(
      `\nlog check (${name}): ${int(check.lines)} lines for ${int(check.expectedLines)} accepted messages, ${check.duplicates} duplicates, ` +
        `${check.torn} torn, ${check.missing} accepted messages missing: ${check.ok ? 'OK' : `FAILED (${describeLogCheck(check)})`}`,
    )
    if (account !== undefined && !account.allAccepted)
      console.log('  (wrk, or some requests were refused or failed: counts checked, but not every message by name)')
  }

  const profiles: Record<string, ProfileSummary> = {}
  if (profileDir !== undefined) {
    for (const name of ['bare', 'hand-written', 'app']) {
      const files = safeList(join(profileDir, name)).filter((file) => file.endsWith('.cpuprofile'))
      const file = files[0]
      if (file === undefined) continue
      const summary = summarizeProfile(readProfile(join(profileDir, name, file)))
      profiles[name] = summary
      console.log(`\n${formatProfileSummary(`profile of ${name} (${join(profileDir, name, file)})`, summary)}`)
    }
  }

  const crashed = overload?.crashed === true || (app !== undefined && app.proc.alive === false && failure !== undefined)
  if (failure !== undefined) console.error(`\nthe bench failed: ${failure}`)
  const resultFile = join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}-${options.mode}-${backendDef.name}.json`)
  writeFileSync(
    resultFile,
    JSON.stringify(
      {
        startedAt,
        finishedAt: new Date(),
        machine: { ...info, loadAverageAtEnd: loadavg().map((value) => Number(value.toFixed(2))) },
        options,
        backend: { name: backendDef.name, env: backend.env },
        appEnv,
        compare,
        overload: overload === undefined ? undefined : { ...overload, accepted: undefined, acceptedCount: overload.accepted.length },
        logCheck,
        handWrittenLogCheck,
        profiles,
        failure,
      },
      null,
      2,
    ),
  )
  console.log(`\nresults: ${resultFile}`)
  if (options.keep) console.log(`run directory kept: ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
  const logsOk = logCheck?.ok === true && handWrittenLogCheck?.ok !== false
  return failure !== undefined || crashed || !logsOk ? 1 : 0
}

/** --threads: its own server and report (see bench/threads.ts). */
async function threadsMode(options: BenchOptions, info: ReturnType<typeof machine>, dir: string): Promise<number> {
  const startedAt = new Date()
  console.log(
    `npm run bench (threads${options.quick ? ', quick' : ''}): ${info.cores} × ${info.cpu}, Node ${info.node}, load average ${info.loadAverageAtStart.join(' ')}`,
  )
  let failure: string | undefined
  let result: Awaited<ReturnType<typeof runThreads>> | undefined
  try {
    result = await runThreads(options, ROOT, dir)
    console.log(`\n${formatThreads(result)}`)
  } catch (error) {
    failure = (error as Error).stack ?? String(error)
    console.error(`\nthe bench failed: ${failure}`)
  }
  const resultsDir = join(ROOT, 'bench/results')
  mkdirSync(resultsDir, { recursive: true })
  const resultFile = join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}-threads.json`)
  const machineAtEnd = { ...info, loadAverageAtEnd: loadavg().map((value) => Number(value.toFixed(2))) }
  writeFileSync(resultFile, JSON.stringify({ startedAt, finishedAt: new Date(), machine: machineAtEnd, options, result, failure }, null, 2))
  console.log(`\nresults: ${resultFile}`)
  if (!options.keep) rmSync(dir, { recursive: true, force: true })
  return failure === undefined ? 0 : 1
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

function safeList(path: string): string[] {
  try {
    return readdirSync(path)
  } catch {
    return []
  }
}

// Exit at once: a keep-alive socket of the readiness checks must not hold the process.
process.exit(await main())
