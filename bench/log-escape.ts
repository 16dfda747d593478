/**
 * The app's own escaping of a message for its log line (`escapeControlCharacters` of
 * dist/app/tasks/log-line.js, which the bench builds first), loaded at run time so that the
 * hand-written references escape exactly as the app does and the bench does not compile
 * against src/. If that module moves, this says so at start-up.
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

type Escape = (message: string) => string

export async function loadAppEscape(): Promise<Escape> {
  const file = resolve(import.meta.dirname, '../dist/app/tasks/log-line.js')
  try {
    const module = (await import(pathToFileURL(file).href)) as { escapeControlCharacters?: Escape }
    if (typeof module.escapeControlCharacters !== 'function') throw new Error('no escapeControlCharacters export')
    return module.escapeControlCharacters
  } catch (error) {
    throw new Error(`the hand-written reference reuses the app's escaping from ${file}: ${(error as Error).message}`)
  }
}
