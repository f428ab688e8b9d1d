// nginx in front of the daemon, with the project's own nginx.conf: the tests and the benchmark
// run the file an operator installs, with only its addresses and paths replaced. Every
// replacement must find its text, so the shipped file cannot drift away from what is tested.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Resources } from './resources.ts'
import { runNginx, type NginxOptions, type NginxServer } from './stock-tools.ts'

const SHIPPED = fileURLToPath(new URL('../../nginx.conf', import.meta.url))

export interface FrontOptions {
  /** where nginx listens, e.g. 127.0.0.1:8081 */
  listen: string
  /** the daemon's HTTP and tracker ports, on 127.0.0.1 where nginx runs */
  httpPort: number
  trackerPort: number
  /** where the tracker listens, when not on 127.0.0.1 */
  trackerHost?: string
  /** <dataDir>/pub */
  pubDir: string
}

/** nginx.conf with this run's addresses and paths: the server blocks nginx is given. */
export async function renderFrontConfig(options: FrontOptions): Promise<string[]> {
  let text = await readFile(SHIPPED, 'utf8')
  const replace = (from: string, to: string) => {
    if (!text.includes(from)) throw new Error(`nginx.conf no longer contains "${from}": update test/kit/nginx-front.ts with it`)
    text = text.replaceAll(from, to)
  }
  replace('server 127.0.0.1:8080;', `server 127.0.0.1:${options.httpPort};`)
  replace('server 127.0.0.1:6969;', `server ${options.trackerHost ?? '127.0.0.1'}:${options.trackerPort};`)
  replace('    listen 80;\n', `    listen ${options.listen};\n`)
  replace('    listen [::]:80;\n', '')
  replace('/var/lib/gribswarm/data/pub', options.pubDir)
  return text.split('\n').filter((line) => !line.startsWith('#'))
}

export async function startNginxFront(
  res: Resources,
  options: FrontOptions & Omit<NginxOptions, 'what'>,
): Promise<Omit<NginxServer, 'settings'>> {
  const server = await renderFrontConfig(options)
  const started = await runNginx(res, server, { ...options, what: `${options.listen} in front of the daemon on port ${options.httpPort}` })
  return { url: `http://${options.listen}`, ...started }
}
