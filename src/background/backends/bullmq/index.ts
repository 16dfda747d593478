/**
 * The BullMQ backend's public entry (`fastify-background-tasks/bullmq`): imported on its own, so
 * bullmq and ioredis load only when it is chosen.
 */
export { BullMQBackend, TASK_BACKOFF, type BullMQBackendOptions } from './backend.js'
