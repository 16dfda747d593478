/**
 * The one check every request passes before its route runs (one onRequest hook, not one per
 * concern): while the server closes, `503 SERVICE_CLOSING` with `Connection: close` (routes
 * marked `servedWhileClosing` still answer); a malformed query string, `400 QUERY_MALFORMED`;
 * a parameter given more than once, `400 QUERY_PARAM_REPEATED`.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { MalformedQueryError, QueryParamRepeatedError, ServiceClosingError } from '../errors.js'
import { queryProblem } from '../querystring.js'

async function requestGuardPlugin(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', (request, reply, done) => {
    if (app.closing && request.routeOptions.config.servedWhileClosing !== true) {
      reply.header('connection', 'close')
      return done(new ServiceClosingError())
    }
    const problem = queryProblem(request.query)
    if (problem === undefined) return done()
    done('malformed' in problem ? new MalformedQueryError(problem.malformed) : new QueryParamRepeatedError(problem.repeated, problem.times))
  })
}

export const requestGuard = fp(requestGuardPlugin, { fastify: '5.x', name: 'request-guard', dependencies: ['closing'] })
