/** Load and checks for crash tests: a client that records what was acknowledged, and the log's verdict. */
import { Pool } from 'undici'
import { expect } from 'vitest'
import { LINE } from './app.js'

/** Every acknowledged message is in the lines; returns how many lines are repeats. */
export function expectAllLogged(lines: string[], acknowledged: Iterable<string>): number {
  const counts = new Map<string, number>()
  for (const line of lines) {
    const match = LINE.exec(line)
    expect(match, `a well-formed line: ${line.slice(0, 80)}`).not.toBeNull()
    counts.set(match![2]!, (counts.get(match![2]!) ?? 0) + 1)
  }
  const missing = [...acknowledged].filter((message) => !counts.has(message))
  expect(missing).toEqual([])
  let repeats = 0
  for (const count of counts.values()) repeats += count - 1
  return repeats
}

/** A client: `connections` loops sending unique messages until stopped or the server is gone. */
export function load(url: string, connections: number, prefix = '') {
  const pool = new Pool(url, { connections })
  const acknowledged = new Set<string>()
  let stopped = false
  const loops = Array.from({ length: connections }, async (_, c) => {
    for (let i = 0; !stopped; i++) {
      const message = `${prefix}c${c}-m${i}`
      try {
        const response = await pool.request({ method: 'POST', path: `/send-message?message=${message}` })
        await response.body.text()
        if (response.statusCode === 200) acknowledged.add(message)
      } catch {
        return // the server is gone
      }
    }
  })
  return {
    acknowledged,
    stop: async () => {
      stopped = true
      await Promise.all(loops)
      await pool.destroy()
    },
  }
}
