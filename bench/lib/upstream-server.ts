// A FakeUpstream in its own process, so that serving (and pacing) the bytes does not share an
// event loop with the daemon being measured. Started by the publishing benchmark:
//   node --import tsx bench/lib/upstream-server.ts PATH BYTES_PER_SECOND KEY...
// (every KEY serves the file at PATH), prints one JSON line {"bucketUrl": ...} once it listens
// on 127.0.0.1, and stops on SIGTERM/SIGINT.
import { FakeUpstream } from '../../test/kit/fake-upstream.ts'

const [path, rate, ...keys] = process.argv.slice(2)
if (!path || !(Number(rate) > 0) || keys.length === 0) {
  process.stderr.write('usage: upstream-server.ts PATH BYTES_PER_SECOND KEY...\n')
  process.exit(2)
}
const upstream = new FakeUpstream({ bytesPerSecond: Number(rate) })
for (const key of keys) await upstream.put({ key, path })
await upstream.start()
process.stdout.write(`${JSON.stringify({ bucketUrl: upstream.bucketUrl })}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void upstream.stop().finally(() => process.exit(0)))
}
// Orphaned (the parent was killed): do not stay behind.
setInterval(() => {
  if (process.ppid === 1) void upstream.stop().finally(() => process.exit(0))
}, 1000).unref()
