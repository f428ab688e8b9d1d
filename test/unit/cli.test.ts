// The installed command (bin/gribswarm.js, running build/ as `npm ci` leaves it), and how a
// daemon ends when whoever started it goes away. Children on loopback, no upstream.
import assert from 'node:assert/strict'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { cliCommand, startCli, writeDaemonConfig, type DaemonCommand, type DaemonSetup } from '../kit/daemon.ts'
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
  for (const command of ['daemon', 'fetch', 'mirror']) assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'))
  for (const command of ['daemon', 'fetch', 'mirror']) {
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
  return startCli(res, cliCommand('daemon'), [], {
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

test("a daemon started by npm stops cleanly when npm's shell dies of the SIGTERM npm forwards it", async () => {
  const res = resources()
  const setup = await writeDaemonConfig(res, 'npm-parent', { source: { enabled: false } })
  const shell = daemonUnderShell(res, setup, { npm_lifecycle_event: 'start' })
  const pid = await daemonPid(setup)
  shell.child.kill('SIGTERM')
  await waitFor('the daemon to stop', () => !isAlive(pid), 15_000)
  await assert.rejects(access(join(setup.dataDir, 'lock')), 'a clean stop releases the data directory')
})

test('a daemon not started by npm (systemd, nohup) keeps running when its parent goes', async () => {
  const res = resources()
  const setup = await writeDaemonConfig(res, 'other-parent', { source: { enabled: false } })
  const shell = daemonUnderShell(res, setup, { npm_lifecycle_event: '' })
  const pid = await daemonPid(setup)
  shell.child.kill('SIGTERM')
  await shell.exited
  // An absence: the daemon checks its parent every second; after three checks it is still there.
  await delay(3000)
  assert.ok(isAlive(pid), 'the daemon stopped with its parent')
  process.kill(pid, 'SIGTERM')
  await waitFor('the daemon to stop on SIGTERM', () => !isAlive(pid), 15_000)
})
