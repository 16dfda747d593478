/**
 * The sqlite journal backend's public entry (`fastify-background-tasks/sqlite`): imported on its
 * own, so its driver (node:sqlite, else better-sqlite3) loads only when it is chosen.
 */
export { SqliteBackend, JournalOpenError, type SqliteBackendOptions, type JournalLogger } from './backend.js'
export { availableSqliteDrivers } from './driver.js'
