/**
 * Every configuration variable is documented where users look for it: `.env.example` (which
 * says it lists every variable) and the README's configuration table.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ConfigSchema } from '../../src/app/config.js'

const ROOT = new URL('../../', import.meta.url)
const variables = Object.keys(ConfigSchema.properties)

describe('configuration variables', () => {
  it('are all in .env.example, each as a line of its own', () => {
    const example = readFileSync(new URL('.env.example', ROOT), 'utf8')
    const missing = variables.filter((name) => !new RegExp(`^#? ?${name}=`, 'm').test(example))
    expect(missing).toEqual([])
  })

  it("are all in the README's configuration table", () => {
    const readme = readFileSync(new URL('README.md', ROOT), 'utf8')
    const rows = readme.split('\n').filter((line) => line.startsWith('| `'))
    const missing = variables.filter((name) => !rows.some((row) => row.split('|')[1]!.includes(`\`${name}\``)))
    expect(missing).toEqual([])
  })
})
