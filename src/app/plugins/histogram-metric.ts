/**
 * A Prometheus histogram read at scrape time from bucket counts kept elsewhere (the runner's
 * task durations, the HTTP durations counted by the metrics plugin). prom-client's Histogram
 * takes one observation a call and hashes its labels each time; this costs the observed path a
 * few additions. Registered with `registry.registerMetric`, it is formatted like prom-client's own.
 */
import type { DurationHistogram } from '../../background/index.js'

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

export type HistogramSource = () => Iterable<[labels: Record<string, string>, histogram: DurationHistogram]>

export class HistogramMetric {
  readonly type = 'histogram' as const
  readonly aggregator = 'sum' as const
  readonly name: string
  readonly help: string
  private readonly source: HistogramSource

  constructor(name: string, help: string, source: HistogramSource) {
    this.name = name
    this.help = help
    this.source = source
  }

  get(): Promise<MetricSnapshot> {
    const values: Value[] = []
    for (const [labels, histogram] of this.source()) {
      let cumulative = 0
      histogram.buckets.forEach((le, i) => {
        cumulative += histogram.counts[i] ?? 0
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: cumulative })
      })
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: histogram.count })
      values.push({ metricName: `${this.name}_sum`, labels, value: histogram.sum })
      values.push({ metricName: `${this.name}_count`, labels, value: histogram.count })
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values })
  }

  /** The counts belong to their owner: a registry reset leaves them. */
  reset(): void {}
}
