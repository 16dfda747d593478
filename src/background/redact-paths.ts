/**
 * Server paths out of what a client reads: an error's text (`ENOENT: no such file or directory,
 * open '/srv/app/logs/log.txt'`) keeps its meaning with the file's name alone (`…/log.txt`).
 */
const ABSOLUTE_PATH = /(^|[\s'"(=])\/(?:[^\s'"():/]+\/)+([^\s'"():/]*)/g

export function redactPaths(text: string): string {
  return text.includes('/') ? text.replace(ABSOLUTE_PATH, '$1…/$2') : text
}
