/** Registers ./ts-hooks.mjs (vitest passes `--import` of this file to its processes, and worker threads inherit it). */
import { register } from 'node:module'

register('./ts-hooks.mjs', import.meta.url)
