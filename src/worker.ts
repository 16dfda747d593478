/**
 * Entry point (`npm run worker`); the worker process itself is worker-process.ts. Fastify is
 * loaded with `require` first, as server.ts does and for the same reason.
 */
import { createRequire } from 'node:module'

createRequire(import.meta.url)('fastify')
await import('./worker-process.js')
