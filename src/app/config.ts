/**
 * Configuration from the environment (and `.env` when present), validated once at start.
 * A bad value stops the start with a message naming the variable. Every variable is
 * documented in `.env.example`.
 */
import { existsSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import { type Static, type TSchema, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { DEFAULTS as TASK_DEFAULTS, type RateLimit, type ScheduleOptions } from '../background/index.js'
import { type ParsedSetting, parseTaskRateLimits, parseTaskSchedules } from './schedules-config.js'
import { TRUST_PROXY_FORMS, parseTrustProxy } from './trust-proxy.js'

const Integer = (minimum: number, maximum: number, defaultValue: number) => Type.Integer({ minimum, maximum, default: defaultValue })
const Flag = (defaultValue: boolean) => Type.Boolean({ default: defaultValue })

export const ConfigSchema = Type.Object({
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  PORT: Integer(0, 65_535, 8000),
  WORKER_PORT: Integer(0, 65_535, 0),
  LOG_FILE: Type.String({ minLength: 1, default: 'logs/log.txt' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' },
  ),
  MESSAGE_MAX_LENGTH: Integer(1, 100_000, 4096),
  SHUTDOWN_TIMEOUT_MS: Integer(0, 3_600_000, TASK_DEFAULTS.shutdownTimeoutMs),
  SHUTDOWN_DELAY_MS: Integer(0, 600_000, 0),
  REQUEST_TIMEOUT_MS: Integer(100, 600_000, 10_000),
  KEEP_ALIVE_TIMEOUT_MS: Integer(100, 600_000, 72_000),
  MAX_CONNECTIONS: Integer(0, 1_000_000, 10_000),
  TASK_CONCURRENCY: Integer(1, 10_000, TASK_DEFAULTS.concurrency),
  TASK_THREADS: Integer(1, 1024, TASK_DEFAULTS.threads),
  TASK_THREAD_MAX_HEAP_MB: Integer(0, 1_048_576, 0),
  HASH_QUEUE_PER_THREAD: Integer(1, 10_000, 4),
  TASK_MAX_PENDING: Integer(1, 10_000_000, TASK_DEFAULTS.maxPending),
  TASK_MAX_SCHEDULED: Integer(1, 10_000_000, TASK_DEFAULTS.maxScheduled),
  TASK_TIMEOUT_MS: Integer(1, 86_400_000, TASK_DEFAULTS.defaultTimeoutMs),
  TASK_CANCEL_GRACE_MS: Integer(0, 600_000, TASK_DEFAULTS.cancelGraceMs),
  TASK_RETENTION_COUNT: Integer(1, 10_000_000, TASK_DEFAULTS.retention.maxCount),
  TASK_RETENTION_MS: Integer(1, 604_800_000, TASK_DEFAULTS.retention.maxAgeMs),
  TASK_BACKEND_TIMEOUT_MS: Integer(100, 600_000, TASK_DEFAULTS.backendTimeoutMs),
  RETRY_AFTER_SECONDS: Integer(1, 3600, 1),
  TASK_BACKEND: Type.Union([Type.Literal('memory'), Type.Literal('sqlite'), Type.Literal('bullmq')], {
    default: 'memory',
  }),
  TASK_DB: Type.String({ minLength: 1, default: 'logs/tasks.db' }),
  TASK_DB_SYNC: Type.Union([Type.Literal('normal'), Type.Literal('full')], { default: 'normal' }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379' }),
  TASK_QUEUE: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,100}$', default: 'background-tasks' }),
  TASK_LOCK_DURATION_MS: Integer(1000, 3_600_000, 30_000),
  /** JSON: recurring schedules and per-name rate limits (schedules-config.ts checks them). */
  TASK_SCHEDULES: Type.String({ default: '[]' }),
  TASK_SCHEDULE_MISSED: Type.Union([Type.Literal('run-once'), Type.Literal('skip')], { default: TASK_DEFAULTS.missedRuns }),
  TASK_RATE_LIMITS: Type.String({ default: '{}' }),
  TASK_STALLED_INTERVAL_MS: Integer(100, 3_600_000, 30_000),
  /** Unset: the task routes, /dashboard and /metrics are open. */
  ADMIN_TOKEN: Type.Optional(
    Type.String({ pattern: '^[!-~]{16,1024}$', description: '16 to 1024 printable ASCII characters without spaces' }),
  ),
  /** A dashboard session's lifetime from sign-in: 1 minute to 30 days, default 8 hours. */
  ADMIN_SESSION_TTL_SECONDS: Integer(60, 2_592_000, 28_800),
  /** Which proxies' X-Forwarded-* headers to believe (see trust-proxy.ts); none by default. */
  TRUST_PROXY: Type.String({ minLength: 1, default: 'false' }),
  LOG_QUERY: Flag(false),
  DOCS_ENABLED: Flag(true),
  METRICS_ENABLED: Flag(true),
})

/** The configuration: the JSON variables parsed. */
export type Config = Omit<Static<typeof ConfigSchema>, 'TASK_SCHEDULES' | 'TASK_RATE_LIMITS'> & {
  TASK_SCHEDULES: ScheduleOptions[]
  TASK_RATE_LIMITS: Record<string, RateLimit>
}

/** The JSON variables, parsed and checked after the schema's own check. */
const JSON_SETTINGS: Record<string, (raw: string) => ParsedSetting<unknown>> = {
  TASK_SCHEDULES: parseTaskSchedules,
  TASK_RATE_LIMITS: parseTaskRateLimits,
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const BOOLEAN_WORDS: Record<string, boolean> = {
  true: true,
  '1': true,
  yes: true,
  on: true,
  false: false,
  '0': false,
  no: false,
  off: false,
}

function describeSchema(schema: TSchema): string {
  if (schema.type === 'integer') return `an integer from ${String(schema.minimum)} to ${String(schema.maximum)}`
  if (schema.type === 'boolean') return 'true or false'
  if (Array.isArray(schema.anyOf)) return `one of ${schema.anyOf.map((s: TSchema) => String(s.const)).join(', ')}`
  if (schema.pattern !== undefined)
    return typeof schema.description === 'string' ? schema.description : `a string matching ${String(schema.pattern)}`
  return 'a non-empty string'
}

const SECRETS: ReadonlySet<string> = new Set(['ADMIN_TOKEN'])

function parseValue(name: string, raw: string, schema: TSchema): unknown {
  // TypeBox converts numbers; flags also take the words people write in .env files.
  const value =
    schema.type === 'boolean'
      ? BOOLEAN_WORDS[raw.trim().toLowerCase()]
      : schema.type === 'integer'
        ? /^-?\d+$/.test(raw.trim())
          ? Value.Convert(schema, raw.trim())
          : raw
        : raw
  if (value === undefined || !Value.Check(schema, value)) {
    // A secret is not echoed: the message goes to the terminal and the logs.
    const got = SECRETS.has(name) ? `a value of ${raw.length} characters` : JSON.stringify(raw)
    throw new ConfigError(`Invalid configuration: ${name} must be ${describeSchema(schema)}, got ${got}`)
  }
  return value
}

/** Checks a schema cannot say: a URL that parses with a port in range, a numeric host that is an address. */
const FURTHER_CHECKS: Partial<Record<keyof Config, { check: (value: string) => boolean; expected: string }>> = {
  REDIS_URL: {
    check: (value) => {
      try {
        const url = new URL(value)
        return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== ''
      } catch {
        return false
      }
    },
    expected: 'a redis:// or rediss:// URL with a host and a port from 1 to 65535',
  },
  TRUST_PROXY: { check: (value) => parseTrustProxy(value) !== undefined, expected: TRUST_PROXY_FORMS },
  HOST: {
    // A name is resolved when the server listens; a dotted number must be an IPv4 address.
    check: (value) => !/^[\d.]+$/.test(value) || isIPv4(value),
    expected: 'an IP address or a host name',
  },
}

/** Build the typed configuration from an environment; unset or empty variables take their default. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config: Record<string, unknown> = {}
  for (const [name, schema] of Object.entries(ConfigSchema.properties) as Array<[string, TSchema]>) {
    const raw = env[name]
    config[name] = raw === undefined || raw === '' ? schema.default : parseValue(name, raw, schema)
    const further = FURTHER_CHECKS[name as keyof Config]
    if (further !== undefined && raw !== undefined && raw !== '' && !further.check(raw)) {
      throw new ConfigError(`Invalid configuration: ${name} must be ${further.expected}, got ${JSON.stringify(raw)}`)
    }
    const parseJson = JSON_SETTINGS[name]
    if (parseJson !== undefined) {
      const parsed = parseJson(config[name] as string)
      if ('problem' in parsed) throw new ConfigError(`Invalid configuration: ${parsed.problem}`)
      config[name] = parsed.value
    }
  }
  return config as Config
}

/** Load `.env` from the working directory into process.env; variables already set win. */
export function loadDotEnv(path = '.env'): void {
  if (existsSync(path)) process.loadEnvFile(path)
}
