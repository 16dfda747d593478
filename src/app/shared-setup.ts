/**
 * What the web process (`app.ts`) and a worker (`worker-app.ts`) both set up first: the log
 * file's lifecycle on the instance, the shutdown state, the request guard, the error replies,
 * the admin token and the error schema.
 */
import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import { adminAuth } from './plugins/admin-auth.js'
import { closingState } from './plugins/closing.js'
import { errorReplies } from './plugins/error-replies.js'
import { requestGuard } from './plugins/request-guard.js'
import { ErrorReply } from './schemas.js'
import type { LogFile } from './tasks/log-file.js'

/**
 * `adminHost`: where the instance serves (for the open-routes warning); undefined when it serves
 * nothing. `adminClock`: the admin sessions' clock in ms (tests), Date.now by default.
 */
export async function registerSharedSetup(
  app: FastifyInstance,
  config: Config,
  logFile: LogFile,
  adminHost: string | undefined,
  adminClock?: () => number,
): Promise<void> {
  if (logFile.tornBytesRemoved > 0) {
    app.log.warn(
      { logFile: logFile.path, bytes: logFile.tornBytesRemoved },
      'removed a torn last line from the log file (a write cut off by a crash)',
    )
  }
  // onClose hooks run last-added first: added before the runner's, this one runs after the
  // runner has drained, so the last tasks still write to the file.
  app.addHook('onClose', async () => {
    await logFile.close()
  })
  await app.register(closingState)
  await app.register(requestGuard)
  await app.register(errorReplies, { retryAfterSeconds: config.RETRY_AFTER_SECONDS })
  await app.register(adminAuth, {
    token: config.ADMIN_TOKEN,
    sessionLifetimeSeconds: config.ADMIN_SESSION_TTL_SECONDS,
    now: adminClock,
    host: adminHost,
  })
  app.addSchema(ErrorReply)
}
