/**
 * The baseline the app is measured against: a bare Fastify route with the same schema and
 * the same reply as POST /send-message, and no background task. Bench-only: not one of
 * the product's routes. Listens on HOST:PORT; LOG_LEVEL and MESSAGE_MAX_LENGTH as the app.
 */
import Fastify from 'fastify'
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'

const RECEIVED = 'Message received. It will be logged soon.'
const env = process.env

const app = Fastify({
  logger: { level: env.LOG_LEVEL ?? 'warn' },
  routerOptions: { ignoreTrailingSlash: true },
}).withTypeProvider<TypeBoxTypeProvider>()

app.post(
  '/send-message',
  {
    schema: {
      querystring: Type.Object(
        { message: Type.String({ minLength: 1, maxLength: Number(env.MESSAGE_MAX_LENGTH ?? 4096) }) },
        { additionalProperties: true },
      ),
      response: { 200: Type.Object({ message: Type.Literal(RECEIVED) }) },
    },
  },
  async () => ({ message: RECEIVED }) as const,
)

app.get('/health', async () => ({ status: 'ok' }))

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void app.close().then(() => process.exit(0))
  })
}

await app.listen({ host: env.HOST ?? '127.0.0.1', port: Number(env.PORT ?? 0) })
