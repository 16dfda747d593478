/**
 * The route the bench's own servers share (bare and hand-written references): the same
 * querystring schema and reply as the app's POST /send-message (and /send-message/, through
 * `ignoreTrailingSlash`). Bench-only; MESSAGE_MAX_LENGTH as the app.
 */
import Fastify from 'fastify'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'

export const RECEIVED = 'Message received. It will be logged soon.'

export const sendMessageSchema = {
  querystring: Type.Object(
    { message: Type.String({ minLength: 1, maxLength: Number(process.env.MESSAGE_MAX_LENGTH ?? 4096) }) },
    { additionalProperties: true },
  ),
  response: { 200: Type.Object({ message: Type.Literal(RECEIVED) }) },
}

/** A Fastify instance configured as the app's (logger level LOG_LEVEL, trailing slash ignored), with GET /health. */
export function benchFastify() {
  const app = Fastify({
    logger: { level: process.env.LOG_LEVEL ?? 'warn' },
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.get('/health', async () => ({ status: 'ok' }))
  return app
}

/** Listen on HOST:PORT; on SIGTERM/SIGINT close the server, run `after` (flush a log), exit 0. */
export async function listenUntilSignalled(app: ReturnType<typeof benchFastify>, after?: () => Promise<void>): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void app
        .close()
        .then(() => after?.())
        .then(() => process.exit(0))
    })
  }
  await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) })
}
