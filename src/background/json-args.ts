/**
 * A defined task's arguments must be plain JSON on every backend: the durable ones store them as
 * JSON, and a task that works in memory must not change when the backend does. What JSON would
 * lose or change silently (a BigInt, `undefined`, NaN, a Date, a Map, a class instance, a cycle)
 * is refused at `add()`, with the path to the value.
 */
export function nonJsonValue(args: unknown[]): string | undefined {
  // The common case, arguments that are all strings, booleans and numbers, allocates nothing.
  let primitive = true
  for (const arg of args) {
    const type = typeof arg
    if (type !== 'string' && type !== 'boolean' && !(type === 'number' && Number.isFinite(arg)) && arg !== null) {
      primitive = false
      break
    }
  }
  return primitive ? undefined : check(args, '', new Set())
}

function check(value: unknown, path: string, parents: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined
    case 'number':
      return Number.isFinite(value) ? undefined : `${where(path)}is ${value}, which JSON cannot hold`
    case 'object':
      break
    default:
      return `${where(path)}is ${describe(value)}, which JSON cannot hold`
  }
  if (value === null) return undefined
  if (parents.has(value)) return `${where(path)}is a circular reference`
  let problem: string | undefined
  parents.add(value)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && problem === undefined; i++) problem = check(value[i], `${path}/${i}`, parents)
  } else {
    const prototype = Object.getPrototypeOf(value) as object | null
    if (prototype !== Object.prototype && prototype !== null) {
      problem = `${where(path)}is a ${value.constructor?.name ?? 'non-plain object'}, not a plain object`
    } else {
      for (const key of Object.keys(value)) {
        problem = check((value as Record<string, unknown>)[key], `${path}/${key}`, parents)
        if (problem !== undefined) break
      }
    }
  }
  parents.delete(value)
  return problem
}

function where(path: string): string {
  return path === '' ? '' : `${path} `
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return 'a BigInt'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  return 'undefined'
}
