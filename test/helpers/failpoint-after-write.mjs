// Loaded into the built server with `node --import`: kills the process (SIGKILL) right after
// the FAILPOINT_AFTER_WRITES-th write of the log file has completed, before the tasks that wrote
// it are recorded done in the journal: the moment at-least-once would write their lines twice.
import { LogFile } from '../../dist/app/tasks/log-file.js'

const after = Number(process.env.FAILPOINT_AFTER_WRITES ?? '0')
if (after > 0) {
  let writes = 0
  const append = LogFile.prototype.append
  LogFile.prototype.append = function (text, beforeWrite) {
    return append.call(this, text, beforeWrite).then(() => {
      if (++writes >= after) process.kill(process.pid, 'SIGKILL')
    })
  }
}
