/**
 * The command line of the bench entry points other than `npm run bench` (options.ts): Node's
 * `parseArgs`, where `--help` prints the usage and exits 0, and an unknown or malformed option
 * prints what is wrong and the usage and exits 2, instead of a stack trace. Call it first, before
 * anything is started.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util'

type Options = NonNullable<ParseArgsConfig['options']>
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values']

/** The parsed options, or what to print and the exit code (`--help`, or a bad option). */
export function parseBenchArgs<const O extends Options>(
  argv: string[],
  usage: string,
  options: O,
): { values: Values<O> } | { exitCode: number; output: string } {
  if (argv.includes('--help') || argv.includes('-h')) return { exitCode: 0, output: usage }
  try {
    return { values: parseArgs({ args: argv, options, strict: true }).values }
  } catch (error) {
    return { exitCode: 2, output: `${error instanceof Error ? error.message : String(error)}\n${usage}` }
  }
}

/** This process's options; `--help` or a bad option prints and exits. */
export function benchArgs<const O extends Options>(usage: string, options: O): Values<O> {
  const parsed = parseBenchArgs(process.argv.slice(2), usage, options)
  if ('values' in parsed) return parsed.values
  if (parsed.exitCode === 0) console.log(parsed.output)
  else console.error(parsed.output)
  process.exit(parsed.exitCode)
}
