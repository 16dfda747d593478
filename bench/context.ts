/** What both bench modes share: where the run lives and how the app is started. */
import type { BenchOptions } from './options.js'
import type { PreparedBackend } from './backends.js'

export interface RunContext {
  options: BenchOptions
  /** The project root. */
  root: string
  /** The run's temporary directory. */
  dir: string
  /** The app's LOG_FILE. */
  logFile: string
  /** Short random id: every message of the run starts with it. */
  runId: string
  /** The --backend name (memory, sqlite, bullmq). */
  backendName: string
  backend: PreparedBackend
  /** The app's environment (backend, log file, level, --env). */
  appEnv: Record<string, string>
  /** Where `--profile` writes .cpuprofile files, or undefined. */
  profileDir: string | undefined
}

/** Messages are `<runId>.<label>-<n>`: letters, digits, dots, a dash and a number. */
export const MESSAGE_PATTERN = /[a-z0-9.]+-\d+/

export function* messages(prefix: string, count: number): Generator<string> {
  for (let n = 0; n < count; n++) yield `${prefix}-${n}`
}
