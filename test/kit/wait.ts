// Polling with a deadline and free loopback ports, shared by the tests, the demo and the benchmarks.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'

async function canListen(port: number): Promise<number | undefined> {
  const server = createServer()
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => resolve(true))
  })
  if (!bound) return undefined
  const actual = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return actual
}

/**
 * A TCP port free on 127.0.0.1 right now, for servers that bind it a little later. Taken below
 * the kernel's ephemeral range: a daemon that starts dozens of outgoing connections (tracker
 * announces) before its HTTP server listens could otherwise be handed that very port as the
 * local end of one of them (EADDRINUSE). Production ports (8080, 6969) are below it too.
 */
export async function freePort(): Promise<number> {
  const range = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999')
  const low = Number(range.trim().split(/\s+/)[0]) || 32768
  const floor = Math.min(20_000, low - 1000)
  for (let attempt = 0; attempt < 50; attempt++) {
    const candidate = floor + Math.floor(Math.random() * (low - floor))
    if (await canListen(candidate)) return candidate
  }
  const any = await canListen(0)
  if (!any) throw new Error('no free TCP port on 127.0.0.1')
  return any
}

/** `count` distinct free ports: freePort() twice can return the same one (it did, for qbittorrent-nox's two). */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

/** Polls `check` until it returns something truthy, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value as NonNullable<T>
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await delay(everyMs)
  }
}
