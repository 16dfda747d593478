/**
 * Entry point (`npm start`); the web process itself is server-process.ts.
 *
 * Fastify, and with it pino and its other CommonJS dependencies, is loaded with `require` before
 * the ES modules import it. Loaded only through `import`, while the module graph is evaluated,
 * about half of the processes ran for their whole life in a slower state (V8 on its generic path
 * where Node creates each `process.nextTick` entry, a fifth to a quarter more CPU per request);
 * loaded first with `require`, none did in the measured runs (docs/performance.md, "Two states").
 */
import { createRequire } from 'node:module'

createRequire(import.meta.url)('fastify')
await import('./server-process.js')
