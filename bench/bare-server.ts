/**
 * The baseline the app is measured against: a bare Fastify route with the same schema and
 * the same reply as POST /send-message, and no background task. Bench-only: not one of
 * the product's routes. Listens on HOST:PORT; LOG_LEVEL and MESSAGE_MAX_LENGTH as the app.
 */
import { benchFastify, listenUntilSignalled, RECEIVED, sendMessageSchema } from './send-message-route.js'

const app = benchFastify()

app.post('/send-message', { schema: sendMessageSchema }, async () => ({ message: RECEIVED }) as const)

await listenUntilSignalled(app)
