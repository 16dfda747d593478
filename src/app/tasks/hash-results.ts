/** The hashes the hash_password task made, by task id, for GET /hash/:id: the newest `maxCount` are kept. */
export class HashResults {
  private readonly byTask = new Map<string, string>()
  private readonly maxCount: number

  constructor(maxCount = 1000) {
    this.maxCount = maxCount
  }

  set(taskId: string, hash: string): void {
    this.byTask.set(taskId, hash)
    // A Map iterates in insertion order: the first key is the oldest.
    if (this.byTask.size > this.maxCount) this.byTask.delete(this.byTask.keys().next().value as string)
  }

  get(taskId: string): string | undefined {
    return this.byTask.get(taskId)
  }
}
