/** Bare Fastify apps (no demo plugins), as an app that installs the package has: each is closed after its test. */
import type { FastifyInstance } from 'fastify'
import { afterEach } from 'vitest'

/** Call once at the top of a test file: `track` closes an app after the test, `listen` also starts it on a free port. */
export function bareApps(): { track: <A extends FastifyInstance>(app: A) => A; listen: (app: FastifyInstance) => Promise<string> } {
  const apps: FastifyInstance[] = []
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })
  const track = <A extends FastifyInstance>(app: A): A => {
    apps.push(app)
    return app
  }
  return { track, listen: async (app) => track(app).listen({ port: 0, host: '127.0.0.1' }) }
}
