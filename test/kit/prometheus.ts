// A real Prometheus (Debian's package `prometheus`: /usr/bin/prometheus and promtool) for the
// metrics tests: its own config file and TSDB directory, its web API on a free 127.0.0.1 port,
// scraping the given targets every second, stopped by the caller's Resources. Plus promtool,
// run on a text or a file.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChildResult, Resources } from './resources.ts'
import { freePort, waitFor } from './wait.ts'

export const PROMETHEUS = '/usr/bin/prometheus'
export const PROMTOOL = '/usr/bin/promtool'

export interface PrometheusOptions {
  /** host:port of each /metrics to scrape (job "gribswarm") */
  targets: string[]
  /** rule files to load (evaluated every second) */
  ruleFiles?: string[]
  /** how long to wait for its API; default 30 s */
  timeoutMs?: number
}

export interface PrometheusHandle {
  /** http://127.0.0.1:<port> */
  url: string
  /** GET <url>/api/v1/<path>: its `data` when the status is "success", else throws. */
  api<T>(path: string): Promise<T>
  /** One instant query: each series' labels and value. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>>
  /** Its output so far (it logs to stderr). */
  readonly output: string
}

/** Starts Prometheus scraping `options.targets` every second; resolves once its API answers. */
export async function startPrometheus(res: Resources, options: PrometheusOptions): Promise<PrometheusHandle> {
  const dir = await res.tempDir('gribswarm-prometheus-')
  const port = await freePort()
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: [{ job_name: 'gribswarm', metrics_path: '/metrics', static_configs: [{ targets: options.targets }] }],
  }
  const configFile = join(dir, 'prometheus.yml')
  // JSON is YAML: no YAML writer needed.
  await writeFile(configFile, JSON.stringify(config, null, 2))
  const child = res.start(PROMETHEUS, [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${join(dir, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ])
  const url = `http://127.0.0.1:${port}`
  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}/api/v1/${path}`, { signal: AbortSignal.timeout(5000) })
    const body = (await response.json()) as { status: string; data: T; error?: string }
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error ?? body.status}`)
    return body.data
  }
  let exited = false
  void child.exited.then(() => (exited = true))
  await waitFor(
    `Prometheus on ${url}`,
    async () => {
      if (exited) throw new Error(`Prometheus exited: ${child.output.slice(-2000)}`)
      return (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) })).ok
    },
    options.timeoutMs ?? 30_000,
    100,
  )
  return {
    url,
    api,
    query: async (expr) => {
      const data = await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
        `query?query=${encodeURIComponent(expr)}`,
      )
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }))
    },
    get output() {
      return child.output
    },
  }
}

/** `promtool <args>` with `stdin` as its input (e.g. `check metrics`, which reads the exposition there). */
export async function promtool(res: Resources, args: string[], stdin?: string): Promise<ChildResult> {
  if (stdin === undefined) return res.run(PROMTOOL, args, 30_000)
  const dir = await res.tempDir('gribswarm-promtool-')
  const input = join(dir, 'stdin')
  await writeFile(input, stdin)
  // Resources.start gives the child no stdin: a shell redirects it from the file.
  return res.run('/bin/sh', ['-c', 'exec "$0" "$@" < "$PROMTOOL_STDIN"', PROMTOOL, ...args], 30_000, {
    env: { ...process.env, PROMTOOL_STDIN: input },
  })
}
