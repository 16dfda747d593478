/** The bench entry points' command line: `--help` and a bad option answer with the usage and an exit code, not a stack trace. */
import { describe, expect, it } from 'vitest'
import { parseBenchArgs } from '../../bench/cli-args.js'

const usage = 'usage: npm run bench:x -- [--runs N]'
const options = { runs: { type: 'string', default: '3' }, quick: { type: 'boolean', default: false } } as const

describe('bench command line', () => {
  it('parses the options, with their defaults', () => {
    expect(parseBenchArgs(['--runs', '5'], usage, options)).toEqual({ values: { runs: '5', quick: false } })
    expect(parseBenchArgs([], usage, options)).toEqual({ values: { runs: '3', quick: false } })
  })

  it('--help (or -h) gives the usage and exit code 0', () => {
    expect(parseBenchArgs(['--help'], usage, options)).toEqual({ exitCode: 0, output: usage })
    expect(parseBenchArgs(['--runs', '2', '-h'], usage, options)).toEqual({ exitCode: 0, output: usage })
  })

  it('an unknown option, or one without its value, gives what is wrong, the usage and exit code 2', () => {
    expect(parseBenchArgs(['--bogus'], usage, options)).toEqual({ exitCode: 2, output: `Unknown option '--bogus'\n${usage}` })
    const missing = parseBenchArgs(['--runs'], usage, options)
    expect(missing).toMatchObject({ exitCode: 2, output: expect.stringMatching(/--runs.*\n/) as unknown })
    expect((missing as { output: string }).output.endsWith(usage)).toBe(true)
  })
})
