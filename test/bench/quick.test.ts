// The benchmark in its quick form, so that it cannot rot: every scenario runs to the end and
// reports a row. Figures are not asserted here (they belong to `npm run bench`, on a quiet
// machine); a scenario that crashes is.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

test('npm run bench -- --quick runs every scenario and prints its table', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bench.ts', '--quick'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-20_000)))
  // The benchmark bounds itself (12 minutes in quick mode, then it cleans up and exits 1).
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, `the benchmark failed:\n${stderr}`)
  const rows = stdout.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| scenario'))
  for (const scenario of [
    'Seeding throughput',
    'Torrent creation',
    'Publishing latency',
    'Resident memory',
    'Origin offload',
    'Notification latency',
    'Following a Sarracenia pump',
    'Tracker',
    'One /metrics scrape',
    'dashboard:',
    'Small box',
  ]) {
    assert.ok(
      rows.some((row) => row.startsWith(`| ${scenario}`)),
      `no row for ${scenario}:\n${stdout}`,
    )
  }
  assert.ok(!rows.some((row) => row.endsWith('| error |')), stdout)
})
