// Started inside a network namespace (`ip netns exec <ns> node ns-bridge.mjs ...`): accepts
// connections on a unix socket, which the filesystem makes reachable from every namespace, and
// forwards each one to HOST:PORT as seen from inside that namespace. This is how the test
// process, in the root namespace, talks to an RPC or HTTP server listening inside a host.
//
// usage: node ns-bridge.mjs SOCKET_PATH HOST PORT
import { unlinkSync } from 'node:fs'
import { connect, createServer } from 'node:net'

const [socketPath, host, portText] = process.argv.slice(2)
const port = Number(portText)
if (!socketPath || !host || !Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node ns-bridge.mjs SOCKET_PATH HOST PORT\n')
  process.exit(2)
}

const removeSocket = () => {
  try {
    unlinkSync(socketPath)
  } catch {
    // already gone
  }
}

const server = createServer((downstream) => {
  const upstream = connect({ host, port })
  // Either side failing ends both: the caller then sees the connection closed, with no reply.
  const close = () => {
    downstream.destroy()
    upstream.destroy()
  }
  upstream.on('error', (err) => {
    process.stderr.write(`ns-bridge ${socketPath}: ${host}:${port}: ${err.message}\n`)
    close()
  })
  downstream.on('error', close)
  downstream.pipe(upstream)
  upstream.pipe(downstream)
})

server.on('error', (err) => {
  process.stderr.write(`ns-bridge ${socketPath}: ${err.message}\n`)
  process.exit(1)
})

removeSocket()
server.listen(socketPath, () => process.stdout.write(`listening ${socketPath} -> ${host}:${port}\n`))

const stop = () => {
  server.close()
  removeSocket()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

// Orphaned (the process that started us died without stopping us): nobody can use us any more.
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) stop()
}, 2000).unref()
