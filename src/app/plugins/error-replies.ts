/**
 * Every error reply, in one place: `{ statusCode, code, error, message }`, a `Retry-After` on
 * every 503 (backlog full, task store unavailable, closing; logged as a summary per interval,
 * not a line each), a plain 500 for anything unexpected
 * (logged in full, never shown), and a coded 404 for unknown routes.
 */
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { InternalError, RouteNotFoundError } from '../errors.js'
import { redactPaths } from '../../background/index.js'
import { RefusalSummary } from './refusal-summary.js'

export interface ErrorRepliesOptions {
  /** Sent as `Retry-After` with every 503. */
  retryAfterSeconds: number
  /** 503s are logged as one summary per interval (ms), not one line each. Default 10000. */
  refusalLogIntervalMs?: number
}

declare module 'fastify' {
  interface FastifyReply {
    /** Set `Retry-After` as every 503 of this service does. */
    retryLater(): FastifyReply
  }
}

async function errorRepliesPlugin(app: FastifyInstance, options: ErrorRepliesOptions): Promise<void> {
  const retryAfter = String(options.retryAfterSeconds)
  const refusals = new RefusalSummary(app.log, options.refusalLogIntervalMs ?? 10_000)
  app.addHook('onClose', (_instance, done) => {
    refusals.close()
    done()
  })
  app.decorateReply('retryLater', function (this: FastifyReply) {
    return this.header('retry-after', retryAfter)
  })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    if (statusCode >= 500 && statusCode !== 503) {
      request.log.error({ err: error }, 'request failed')
      const internal = new InternalError()
      return reply.code(500).send({ statusCode: 500, code: internal.code, error: STATUS_CODES[500], message: internal.message })
    }
    if (statusCode === 503) {
      reply.retryLater()
      refusals.count(error.code ?? 'ERROR')
    }
    return (
      reply
        .code(statusCode)
        // A 503 from the task store may quote a file: the client gets its name, not the server's path.
        .send({ statusCode, code: error.code ?? 'ERROR', error: STATUS_CODES[statusCode] ?? 'Error', message: redactPaths(error.message) })
    )
  })

  app.setNotFoundHandler((request) => {
    throw new RouteNotFoundError(request.method, request.url.split('?')[0] ?? '/')
  })
}

export const errorReplies = fp(errorRepliesPlugin, { fastify: '5.x', name: 'error-replies' })
