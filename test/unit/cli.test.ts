// The installed command (bin/gribswarm.js, running build/ as `npm ci` leaves it), and how a
// daemon ends when whoever started it goes away. Children on loopback, no upstream.
import assert from 'node:assert/strict'
import { access, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { cliCommand, startCli, writeDaemonConfig, type DaemonCommand, type DaemonSetup } from '../kit/daemon.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { onCleanup, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const launcher: DaemonCommand = { args: ['bin/gribswarm.js'], how: 'node bin/gribswarm.js' }

function resources(): Resources {
  const res = new Resources()
  onCleanup(function stopTheChildren() {
    return res.cleanup()
  })
  return res
}

test('gribswarm --help lists the commands, each runs from build/, and an unknown one exits 1 naming it', async () => {
  const res = resources()
  const help = await startCli(res, launcher, ['--help']).finished(30_000)
  assert.equal(help.code, 0, help.stderr)
  for (const command of ['start', 'daemon', 'fetch', 'mirror', 'get', 'doctor', 'demo'])
    assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'))
  for (const command of ['start', 'daemon', 'fetch', 'mirror', 'doctor']) {
    const commandHelp = await startCli(res, launcher, [command, '--help']).finished(30_000)
    assert.equal(commandHelp.code, 0, `${command} --help: ${commandHelp.stderr}`)
    assert.match(commandHelp.stdout, /--config FILE/)
  }
  const unknown = await startCli(res, launcher, ['serve']).finished(30_000)
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /unknown command "serve"/)
})

/** The daemon of `setup` under `sh -c`, as npm runs a script: the shell stays its parent. */
function daemonUnderShell(res: Resources, setup: DaemonSetup, env: Record<string, string>) {
  return startCli(res, cliCommand('start'), [], {
    env: { GRIBSWARM_CONFIG: setup.configPath, ...env },
    // "; exit": the shell waits for node rather than exec it, as npm's `sh -c` does.
    wrap: (command, args) => ({ command: '/bin/sh', args: ['-c', '"$@"; exit', 'sh', command, ...args] }),
  })
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Waits until the daemon answers, and gives its pid (the data directory's lock holds it). */
async function daemonPid(setup: DaemonSetup): Promise<number> {
  await waitFor('the daemon to answer', () => fetch(`${setup.publicBaseUrl}/api/status`).then((r) => r.ok), 30_000, 200)
  const pid = Number(await readFile(join(setup.dataDir, 'lock'), 'utf8'))
  onCleanup(async function stopTheOrphan() {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL')
  })
  return pid
}

test("a daemon started by npm stops cleanly when npm's shell dies of the SIGTERM npm forwards it; one started otherwise keeps running", async () => {
  const res = resources()
  const [npmSetup, otherSetup] = [
    await writeDaemonConfig(res, 'npm-parent', { source: { enabled: false } }),
    await writeDaemonConfig(res, 'other-parent', { source: { enabled: false } }),
  ]
  const npmShell = daemonUnderShell(res, npmSetup, { npm_lifecycle_event: 'start' })
  // systemd, nohup: a parent that goes is no reason to stop.
  const otherShell = daemonUnderShell(res, otherSetup, { npm_lifecycle_event: '' })
  const [npmPid, otherPid] = [await daemonPid(npmSetup), await daemonPid(otherSetup)]
  npmShell.child.kill('SIGTERM')
  otherShell.child.kill('SIGTERM')
  await otherShell.exited
  await waitFor('the daemon started by npm to stop', () => !isAlive(npmPid), 15_000)
  await assert.rejects(access(join(npmSetup.dataDir, 'lock')), 'a clean stop releases the data directory')
  // Both daemons watched for the same time, the one started by npm long enough to stop.
  assert.ok(isAlive(otherPid), 'the daemon not started by npm stopped with its parent')
  process.kill(otherPid, 'SIGTERM')
  await waitFor('the other daemon to stop on SIGTERM', () => !isAlive(otherPid), 15_000)
})

test('fetch --dry-run lists what a pass would fetch and writes nothing, not even the data directory', async () => {
  const res = resources()
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  const body = await res.tempDir('gribswarm-dry-run-')
  await writeFile(join(body, 'f.grib2'), 'GRIB')
  const run = '2026-11-23T00:00:00Z'
  await upstream.put({ key: arpegeKey({ run, grid: '01', pkg: 'SP1', range: '000H012H' }), path: join(body, 'f.grib2') })
  const dataDir = join(await res.tempDir('gribswarm-dry-run-'), 'never-made')
  const dryRun = await startCli(res, cliCommand('fetch'), ['--dry-run', '--run', run, '--package', 'SP1'], {
    env: {
      GRIBSWARM_DATADIR: dataDir,
      GRIBSWARM_SOURCE__BUCKETURL: upstream.bucketUrl,
      GRIBSWARM_SOURCE__FALLBACKBUCKETURLS: '[]',
      GRIBSWARM_SOURCE__RANGES: '000H012H',
    },
  }).finished(60_000)
  assert.equal(dryRun.code, 0, dryRun.output)
  assert.match(dryRun.stdout, /^1 to fetch, 0 already done/m)
  await assert.rejects(access(dataDir), 'no data directory made')
})
