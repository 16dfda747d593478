/**
 * `background_tasks_duration_seconds{task,status}` as a Prometheus histogram, read at scrape time
 * from the runner's bucket counts (prom-client's Histogram can only be fed one observation at a
 * time, which would put a call per task back on the tasks' path). Registered with
 * `registry.registerMetric`, it is formatted like any prom-client histogram.
 */
import { DURATION_BUCKETS, type TaskCounters } from '../background/index.js'

interface Value {
  metricName: string
  labels: Record<string, string | number>
  value: number
}

/** What prom-client's registry reads from a metric (`getMetricsAsString`). */
export interface MetricSnapshot {
  name: string
  help: string
  type: 'histogram'
  aggregator: 'sum'
  values: Value[]
}

export class TaskDurationMetric {
  readonly name = 'background_tasks_duration_seconds'
  readonly help = 'Duration of each attempt that ran, by how it ended (succeeded, failed, cancelled, retried)'
  readonly type = 'histogram' as const
  readonly aggregator = 'sum' as const
  private readonly counters: TaskCounters

  constructor(counters: TaskCounters) {
    this.counters = counters
  }

  get(): Promise<MetricSnapshot> {
    const values: Value[] = []
    for (const [task, byEnd] of this.counters.durations) {
      for (const [status, histogram] of byEnd) {
        let cumulative = 0
        DURATION_BUCKETS.forEach((le, i) => {
          cumulative += histogram.counts[i] ?? 0
          values.push({ metricName: `${this.name}_bucket`, labels: { le, task, status }, value: cumulative })
        })
        values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', task, status }, value: histogram.count })
        values.push({ metricName: `${this.name}_sum`, labels: { task, status }, value: histogram.sum })
        values.push({ metricName: `${this.name}_count`, labels: { task, status }, value: histogram.count })
      }
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values })
  }

  /** The counts belong to the runner: a registry reset leaves them. */
  reset(): void {}
}
