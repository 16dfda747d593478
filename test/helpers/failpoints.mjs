// Loaded into the built server with `node --import` (test/background/failpoints.test.ts): kills the process
// (SIGKILL, as `kill -9` would) inside the windows that exactly once for `log_message` rests on.
// Each point is off unless its variable is set to N > 0; src/ has no hook for them:
//
// - FAILPOINT_AFTER_CLAIM_COMMITS=N: right after the N-th journal commit that carried a claim (a
//   changed record `running`), before anything else runs: the claim is in the file, the claimed
//   tasks have done nothing yet. (Wraps the built `Journal.prototype.write`, whatever the driver.)
// - FAILPOINT_BEFORE_LOG_WRITE=N: the N-th write(2) of the log file is about to be issued: the
//   batch's intents are committed (or should be), not one byte of its lines is in the file.
// - FAILPOINT_TORN_LOG_WRITE=N: the N-th write of the log file puts its bytes in the file up to
//   the middle of its middle line, then the process dies: a crash in the middle of a write (the
//   batch's lines before that one are in whole, that one torn, those after it missing).
// - FAILPOINT_AFTER_LOG_WRITE=N: the N-th write of the log file has landed; dies before its
//   callback runs, so the tasks never learn it and their results are not committed.
//
// The log file's writes are told from others (pino's stdout…) by descriptor: those that
// `fs.openSync` opened for appending at the path LOG_FILE names. `fs.write` and `fs.openSync` are
// wrapped on the `node:fs` module and `syncBuiltinESMExports()` carries that to the ESM bindings
// the server imports by name.
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { resolve } from 'node:path'

const at = (name) => {
  const value = Number(process.env[name] ?? '0')
  return Number.isInteger(value) && value > 0 ? value : 0
}
const die = () => process.kill(process.pid, 'SIGKILL')

const afterClaimCommits = at('FAILPOINT_AFTER_CLAIM_COMMITS')
if (afterClaimCommits > 0) {
  const { Journal } = await import('../../dist/background/backends/sqlite/journal.js')
  const write = Journal.prototype.write
  let claimCommits = 0
  Journal.prototype.write = function (batch) {
    write.call(this, batch) // committed once it returns (it throws otherwise)
    const claims = [...batch.changes.values()].some((record) => record?.status === 'running')
    if (claims && ++claimCommits >= afterClaimCommits) die()
  }
}

const logWrites = {
  before: at('FAILPOINT_BEFORE_LOG_WRITE'),
  torn: at('FAILPOINT_TORN_LOG_WRITE'),
  after: at('FAILPOINT_AFTER_LOG_WRITE'),
}
if (Object.values(logWrites).some((n) => n > 0)) {
  if (process.env.LOG_FILE === undefined) throw new Error('the log write failpoints need LOG_FILE')
  const logPath = resolve(process.env.LOG_FILE)
  const logFds = new Set()
  const { openSync, closeSync, write } = fs
  fs.openSync = function (path, flags, ...rest) {
    const fd = openSync.call(this, path, flags, ...rest)
    if (flags === 'a' && typeof path === 'string' && resolve(path) === logPath) logFds.add(fd)
    return fd
  }
  fs.closeSync = function (fd) {
    logFds.delete(fd)
    return closeSync.call(this, fd)
  }
  let writes = 0
  // The form log-file-handle.ts uses: write(fd, buffer, offset, length, position, callback).
  fs.write = function (fd, ...args) {
    const [buffer, offset, length, position, callback] = args
    if (!logFds.has(fd) || typeof callback !== 'function' || !Buffer.isBuffer(buffer)) return write.call(this, fd, ...args)
    const n = ++writes
    if (n === logWrites.before) die()
    if (n === logWrites.torn) {
      // Cut in the middle of the batch's middle line: the lines before it whole, it torn, none after.
      const starts = [offset]
      for (let i = buffer.indexOf(0x0a, offset); i !== -1 && i < offset + length - 1; i = buffer.indexOf(0x0a, i + 1)) starts.push(i + 1)
      const middle = starts[Math.floor((starts.length - 1) / 2)]
      const next = starts[Math.floor((starts.length - 1) / 2) + 1] ?? offset + length
      fs.writeSync(fd, buffer, offset, middle - offset + Math.floor((next - middle) / 2))
      die()
    }
    if (n === logWrites.after) {
      return write.call(this, fd, buffer, offset, length, position, () => die())
    }
    return write.call(this, fd, buffer, offset, length, position, callback)
  }
  syncBuiltinESMExports()
}
