/**
 * Where the time went, from a V8 `.cpuprofile` (node --cpu-prof): self time per function,
 * time including callees for the project's own functions, and a split by origin.
 *
 * Also usable alone: `node dist-bench/profile-summary.js FILE.cpuprofile [TOP]`.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface FunctionTime {
  name: string
  where: string
  selfMs: number
  selfPct: number
  totalMs: number
  totalPct: number
}

export interface ProfileSummary {
  totalMs: number
  /** Busy = not idle: what the percentages of `byOrigin` are of. */
  busyMs: number
  byOrigin: Array<{ origin: string; ms: number; pctOfBusy: number }>
  topSelf: FunctionTime[]
  /** The project's own functions (dist/…), by time including what they call. */
  ownTotal: FunctionTime[]
}

function origin(url: string, name: string): string {
  if (name === '(idle)') return 'idle'
  if (name === '(garbage collector)') return 'GC'
  if (name === '(program)') return 'V8/native (program)'
  if (url === '') return 'native'
  if (url.startsWith('node:')) return 'node core'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return (rest[0] ?? '').startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? 'node_modules')
  }
  if (url.includes('/dist/')) return 'app (dist/)'
  if (url.includes('/dist-bench/')) return 'bench (dist-bench/)'
  return 'other'
}

function shortWhere(url: string, line: number): string {
  if (url === '') return ''
  const nm = url.lastIndexOf('/node_modules/')
  const short = nm !== -1 ? url.slice(nm + '/node_modules/'.length) : url.replace(/^.*\/(dist(-bench)?\/)/, '$1')
  return `${short.replace(/^file:\/\//, '')}:${line + 1}`
}

export function summarizeProfile(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const key = (node: ProfileNode) =>
    `${node.callFrame.functionName || '(anonymous)'}\u0000${shortWhere(node.callFrame.url, node.callFrame.lineNumber)}`
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  const origins = new Map<string, number>()
  let totalUs = 0
  let idleUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0 // a sample's time is the delta to the next one
    const node = byId.get(profile.samples[i] as number)
    if (node === undefined) continue
    totalUs += dt
    const o = origin(node.callFrame.url, node.callFrame.functionName)
    if (o === 'idle') idleUs += dt
    origins.set(o, (origins.get(o) ?? 0) + dt)
    self.set(key(node), (self.get(key(node)) ?? 0) + dt)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)
      if (frame === undefined) break
      const k = key(frame)
      if (seen.has(k)) continue
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + dt)
    }
  }
  const busyUs = totalUs - idleUs
  const row = (k: string): FunctionTime => {
    const [name = '', where = ''] = k.split('\u0000')
    const s = self.get(k) ?? 0
    const t = total.get(k) ?? 0
    return { name, where, selfMs: s / 1000, selfPct: (100 * s) / busyUs, totalMs: t / 1000, totalPct: (100 * t) / busyUs }
  }
  const topSelf = [...self.entries()]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k]) => row(k))
  const ownTotal = [...total.entries()]
    .filter(([k]) => k.includes('\u0000dist/'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k]) => row(k))
  const byOrigin = [...origins.entries()]
    .filter(([o]) => o !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .map(([o, us]) => ({ origin: o, ms: us / 1000, pctOfBusy: (100 * us) / busyUs }))
  return { totalMs: totalUs / 1000, busyMs: busyUs / 1000, byOrigin, topSelf, ownTotal }
}

export function formatProfileSummary(title: string, summary: ProfileSummary): string {
  const pct = (value: number) => `${value.toFixed(1).padStart(5)}%`
  const lines = [
    `${title}: ${(summary.busyMs / 1000).toFixed(1)} s busy of ${(summary.totalMs / 1000).toFixed(1)} s profiled`,
    '  by origin (% of busy):',
    ...summary.byOrigin.slice(0, 12).map((o) => `    ${pct(o.pctOfBusy)}  ${o.origin}`),
    '  top functions by self time (% of busy):',
    ...summary.topSelf.map((f) => `    ${pct(f.selfPct)}  ${f.name}  ${f.where}`),
    "  the app's own functions by time including callees (% of busy):",
    ...summary.ownTotal.map((f) => `    ${pct(f.totalPct)} (self ${pct(f.selfPct).trim()})  ${f.name}  ${f.where}`),
  ]
  return lines.join('\n')
}

export function readProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top] = process.argv.slice(2)
  if (file === undefined) {
    console.error('usage: node dist-bench/profile-summary.js FILE.cpuprofile [TOP]')
    process.exit(2)
  }
  console.log(formatProfileSummary(file, summarizeProfile(readProfile(file), Number(top ?? 25))))
}
