// Part of `npm run build`: the dashboard's page, script and stylesheet are plain files, not
// compiled; copied next to the built plugin (dist/background/dashboard/assets/), where the
// plugin reads them and the package ships them. Replaced whole, so a removed file goes too.
import { cpSync, rmSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const from = join(root, 'src/background/dashboard/assets')
const to = join(root, 'dist/background/dashboard/assets')
rmSync(to, { recursive: true, force: true })
cpSync(from, to, { recursive: true })
