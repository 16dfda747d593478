/** Pure parts: the line format, the configuration loader, the backoff curve. */
import { describe, expect, it } from 'vitest'
import { escapeControlCharacters, formatLogLine } from '../../src/app/tasks/log-line.js'
import { ConfigError, loadConfig } from '../../src/app/config.js'
import { redactPaths } from '../../src/background/redact-paths.js'

describe('log line', () => {
  it('formats `<ISO timestamp>: <message>\\n`', () => {
    expect(formatLogLine('Hello', new Date('2026-11-25T11:34:58.994Z'))).toBe('2026-11-25T11:34:58.994Z: Hello\n')
  })

  it('escapes every C0/C1 control, DEL and U+2028/2029, nothing else', () => {
    for (let code = 0; code < 0xa0; code++) {
      const char = String.fromCharCode(code)
      const escaped = escapeControlCharacters(char)
      if (code < 0x20 || (code >= 0x7f && code < 0xa0)) {
        expect(escaped).toMatch(/^\\(n|r|t|u00[0-9a-f]{2})$/)
      } else {
        expect(escaped).toBe(char)
      }
    }
    expect(escapeControlCharacters('\u2028\u2029')).toBe('\\u2028\\u2029')
    expect(escapeControlCharacters('a\\nb')).toBe('a\\nb')
    expect(escapeControlCharacters('👋 日本 שלום')).toBe('👋 日本 שלום')
  })

  it('escapes the bidirectional and invisible format characters, so a line shows what it holds; keeps the joiners emoji need', () => {
    // A right-to-left override would display "txt.exe" as "exe.txt".
    expect(escapeControlCharacters('invoice\u202Etxt.exe')).toBe('invoice\\u202etxt.exe')
    for (const code of [
      0x061c, 0x200b, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2060, 0x2064, 0x2066, 0x2067, 0x2068, 0x2069, 0xfeff,
    ]) {
      expect(escapeControlCharacters(String.fromCharCode(code))).toBe(`\\u${code.toString(16).padStart(4, '0')}`)
    }
    const family = '👨\u200D👩\u200D👧'
    expect(escapeControlCharacters(family)).toBe(family)
    expect(escapeControlCharacters('a\u200Cb')).toBe('a\u200Cb')
  })
})

describe('configuration', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toMatchObject({
      HOST: '127.0.0.1',
      PORT: 8000,
      LOG_FILE: 'logs/log.txt',
      LOG_LEVEL: 'info',
      MESSAGE_MAX_LENGTH: 4096,
      SHUTDOWN_TIMEOUT_MS: 10_000,
      TASK_BACKEND: 'memory',
      DOCS_ENABLED: true,
    })
  })

  it('parses numbers and flags', () => {
    expect(loadConfig({ PORT: '0', DOCS_ENABLED: 'false', METRICS_ENABLED: 'off' })).toMatchObject({
      PORT: 0,
      DOCS_ENABLED: false,
      METRICS_ENABLED: false,
    })
  })

  it.each([
    ['PORT', '80x', 'PORT must be an integer from 0 to 65535, got "80x"'],
    ['PORT', '70000', 'PORT must be an integer from 0 to 65535, got "70000"'],
    ['MESSAGE_MAX_LENGTH', '0', 'MESSAGE_MAX_LENGTH must be an integer from 1 to 100000, got "0"'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    ['TASK_BACKEND', 'kafka', 'TASK_BACKEND must be one of memory, sqlite, bullmq, got "kafka"'],
    ['DOCS_ENABLED', 'maybe', 'DOCS_ENABLED must be true or false, got "maybe"'],
    ['SHUTDOWN_TIMEOUT_MS', '1.5', 'SHUTDOWN_TIMEOUT_MS must be an integer from 0 to 3600000, got "1.5"'],
    [
      'REDIS_URL',
      'redis://127.0.0.1:99999',
      'REDIS_URL must be a redis:// or rediss:// URL with a host and a port from 1 to 65535, got "redis://127.0.0.1:99999"',
    ],
    ['HOST', '999.1.1.1', 'HOST must be an IP address or a host name, got "999.1.1.1"'],
  ])('refuses %s=%s, naming the variable', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError)
    expect(() => loadConfig({ [name]: value })).toThrow(`Invalid configuration: ${message}`)
  })
})

describe('redactPaths', () => {
  it('keeps a file name and drops the directories of every absolute path, nothing else', () => {
    expect(redactPaths("ENOENT: no such file or directory, open '/srv/app/logs/log.txt'")).toBe(
      "ENOENT: no such file or directory, open '…/log.txt'",
    )
    expect(redactPaths('the journal file /var/lib/app/tasks.db was deleted')).toBe('the journal file …/tasks.db was deleted')
    expect(redactPaths('ENOTDIR: not a directory, open "/tmp/x/plain-file/log.txt"')).toBe('ENOTDIR: not a directory, open "…/log.txt"')
    expect(redactPaths('querystring/message must NOT have more than 4096 characters')).toBe(
      'querystring/message must NOT have more than 4096 characters',
    )
    expect(redactPaths('Route POST /send-message not found')).toBe('Route POST /send-message not found')
  })
})
