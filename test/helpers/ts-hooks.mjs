/**
 * Module hooks for the test processes, so that worker threads (which Node starts without
 * vitest's transform) can load the TypeScript sources: an import of `x.js` that does not exist
 * resolves to `x.ts` beside it (as TypeScript's NodeNext resolution does), and a `.ts` file is
 * transpiled with TypeScript. The built server (`dist/`) never needs them.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context)
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.endsWith('.js')) throw error
    // No .ts either: the original error, which names the .js that was asked for.
    return nextResolve(`${specifier.slice(0, -3)}.ts`, context).catch(() => {
      throw error
    })
  }
}

let typescript

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context)
  typescript ??= (await import('typescript')).default
  const source = await readFile(fileURLToPath(url), 'utf8')
  const { outputText } = typescript.transpileModule(source, {
    fileName: fileURLToPath(url),
    compilerOptions: {
      module: typescript.ModuleKind.ESNext,
      target: typescript.ScriptTarget.ES2022,
      inlineSourceMap: true,
      verbatimModuleSyntax: false,
    },
  })
  return { format: 'module', source: outputText, shortCircuit: true }
}
