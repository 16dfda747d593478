/**
 * The one check every request passes before its route runs (one onRequest hook, not one per
 * concern: each hook call costs every request): while the server closes, `503 SERVICE_CLOSING`
 * with `Connection: close` (routes marked `servedWhileClosing` still answer); a body sent to a
 * route marked `bodyNotAllowed`, `400 BODY_NOT_ALLOWED` before it is parsed; a malformed query
 * string, `400 QUERY_MALFORMED`; a parameter given more than once, `400 QUERY_PARAM_REPEATED`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { BodyNotAllowedError, MalformedQueryError, QueryParamRepeatedError, ServiceClosingError } from '../errors.js'
import { queryProblem } from '../querystring.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route takes no request body: one is refused with 400 BODY_NOT_ALLOWED. */
    bodyNotAllowed?: boolean
  }
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length']
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
}

async function requestGuardPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', (request, reply, done) => {
    if (app.closing && request.routeOptions.config.servedWhileClosing !== true) {
      reply.header('connection', 'close')
      return done(new ServiceClosingError())
    }
    // Only a request with a body pays for reading the route's config.
    if (hasBody(request) && request.routeOptions.config.bodyNotAllowed === true) return done(new BodyNotAllowedError())
    const problem = queryProblem(request.query)
    if (problem === undefined) return done()
    done('malformed' in problem ? new MalformedQueryError(problem.malformed) : new QueryParamRepeatedError(problem.repeated, problem.times))
  })
}

export const requestGuard = fp(requestGuardPlugin, { fastify: '5.x', name: 'request-guard', dependencies: ['closing'] })
