// The installed command, `gribswarm`, as a user meets it: bin/gribswarm.js running the compiled
// build/ (made here if missing or older than src/, as `npm ci` makes it), its help and version,
// each subcommand's, an unknown command, `gribswarm doctor` on a loopback configuration (and
// with its HTTP port taken), `npx gribswarm` in the checkout, a global install, and the systemd
// unit through systemd-analyze. Exit status and stdout only: help and version text are the
// command's interface; the daemon's log lines are not looked at.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { before, test } from 'node:test'
import { NODE_FLAGS, startCli, writeDaemonConfig, type DaemonCommand } from '../kit/daemon.ts'
import { onCleanup } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const VERSION = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const COMMANDS = ['start', 'daemon', 'fetch', 'mirror', 'get', 'doctor', 'demo']
const gribswarm: DaemonCommand = { args: ['bin/gribswarm.js'], how: 'node bin/gribswarm.js' }

const res = new Resources()
onCleanup(function stopTheChildren() {
  return res.cleanup()
})

/** The newest modification time of the files under `dir` ending in `suffix`. */
async function newest(dir: string, suffix: string): Promise<number> {
  let latest = 0
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith(suffix))
      latest = Math.max(latest, (await stat(join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name))).mtimeMs)
  }
  return latest
}

before(async () => {
  const built = await stat(join(ROOT, 'build/cli/start.js')).then(
    (s) => s.mtimeMs,
    () => 0,
  )
  if (built >= (await newest(join(ROOT, 'src'), '.ts'))) return
  const build = await res.run('npm', ['run', 'build', '--silent'], 180_000, { cwd: ROOT })
  assert.equal(build.code, 0, `npm run build: ${build.output.slice(-3000)}`)
})

const run = (args: string[], env: Record<string, string> = {}) => startCli(res, gribswarm, args, { env }).finished(60_000)

test('gribswarm --help lists every command, --version prints "gribswarm <version>", both exit 0', async () => {
  const help = await run(['--help'])
  assert.equal(help.code, 0, help.stderr)
  assert.match(help.stdout, /^Usage: gribswarm COMMAND/)
  for (const command of COMMANDS) assert.match(help.stdout, new RegExp(`^  ${command} +\\S`, 'm'), command)
  const version = await run(['--version'])
  assert.equal(version.code, 0, version.stderr)
  assert.equal(version.stdout, `gribswarm ${VERSION}\n`)
})

test('each command has --help (exit 0, its usage on stdout) and --version (the same line as gribswarm --version)', async () => {
  await Promise.all(
    COMMANDS.map(async (command) => {
      const help = await run([command, '--help'])
      assert.equal(help.code, 0, `${command} --help: ${help.stderr}`)
      const usage = command === 'daemon' ? 'start' : command
      assert.match(help.stdout, new RegExp(`^Usage: gribswarm ${usage}\\b`), command)
      assert.match(help.stdout, /--version/, command)
      const version = await run([command, '--version'])
      assert.equal(version.code, 0, `${command} --version: ${version.stderr}`)
      assert.equal(version.stdout, `gribswarm ${VERSION}\n`, command)
    }),
  )
})

test('an unknown command or none exits 1 naming the problem on stderr, with the command list', async () => {
  const unknown = await run(['serve'])
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /^gribswarm: unknown command "serve"/)
  assert.match(unknown.stderr, /^  doctor /m)
  assert.equal(unknown.stdout, '')
  const none = await run([])
  assert.equal(none.code, 1)
  assert.match(none.stderr, /expected a command/)
  const badOption = await run(['doctor', '--frobnicate'])
  assert.equal(badOption.code, 1)
  assert.match(badOption.stderr, /--frobnicate/)
})

test('gribswarm doctor on loopback exits 0 with one line per check; with the HTTP port taken, 1 and a FAIL line for it; a bad config, 2', async () => {
  const setup = await writeDaemonConfig(res, 'doctor', { source: { enabled: false } })
  const env = { GRIBSWARM_CONFIG: setup.configPath }
  const ok = await run(['doctor'], env)
  assert.equal(ok.code, 0, ok.output)
  const lines = ok.stdout.trimEnd().split('\n')
  const checks = lines.slice(0, -1)
  assert.deepEqual(
    checks.map((line) => /^(?:OK  |WARN|FAIL) ([a-z ]+):/.exec(line)?.[1]),
    ['port http', 'port tracker', 'port seed', 'data directory', 'disk budget', 'gdal ccsds', 'public url'],
    ok.stdout,
  )
  assert.ok(!checks.some((line) => line.startsWith('FAIL')), ok.stdout)
  assert.match(lines.at(-1)!, /^\d+ ok, \d+ warnings, 0 failed$/)
  // --skip-ports: beside a running daemon.
  const skip = await run(['doctor', '--skip-ports'], env)
  assert.equal(skip.code, 0, skip.output)
  assert.doesNotMatch(skip.stdout, /port http/)

  const server = createServer()
  await new Promise<void>((resolve) => server.listen(setup.httpPort, '127.0.0.1', resolve))
  try {
    const taken = await run(['doctor'], env)
    assert.equal(taken.code, 1, taken.output)
    assert.match(taken.stdout, new RegExp(`^FAIL port http: 127\\.0\\.0\\.1:${setup.httpPort} \\(tcp\\) is in use`, 'm'))
    assert.match(taken.stdout, /, 1 failed$/m)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
  const bad = await run(['doctor'], { ...env, GRIBSWARM_HTTP__PORT: 'eighty' })
  assert.equal(bad.code, 2, bad.output)
})

test("npx gribswarm --version in the checkout runs the package's own command", async () => {
  const cache = await res.tempDir('gribswarm-npx-cache-')
  const npx = await res.run('npx', ['--offline', 'gribswarm', '--version'], 180_000, {
    cwd: ROOT,
    env: { ...process.env, npm_config_cache: cache, npm_config_update_notifier: 'false' },
  })
  assert.equal(npx.code, 0, npx.output)
  assert.equal(npx.stdout, `gribswarm ${VERSION}\n`)
})

test('a global install (npm install -g of the checkout) gives a gribswarm command that runs from anywhere', async () => {
  const prefix = await res.tempDir('gribswarm-global-')
  const cache = await res.tempDir('gribswarm-global-cache-')
  const install = await res.run(
    'npm',
    ['install', '--global', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, '--cache', cache, ROOT],
    180_000,
    { cwd: prefix, env: { ...process.env, npm_config_update_notifier: 'false' } },
  )
  assert.equal(install.code, 0, install.output)
  const bin = join(prefix, 'bin', 'gribswarm')
  const elsewhere = await res.tempDir('gribswarm-elsewhere-')
  const version = await res.run(bin, ['--version'], 60_000, { cwd: elsewhere })
  assert.equal(version.code, 0, version.output)
  assert.equal(version.stdout, `gribswarm ${VERSION}\n`)
  const help = await res.run(bin, ['--help'], 60_000, { cwd: elsewhere })
  assert.equal(help.code, 0, help.output)
  for (const command of COMMANDS) assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'))
  const doctorHelp = await res.run(bin, ['doctor', '--help'], 60_000, { cwd: elsewhere })
  assert.equal(doctorHelp.code, 0, doctorHelp.output)
  assert.match(doctorHelp.stdout, /^Usage: gribswarm doctor/)
})

function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

test(
  'config/gribswarm.service passes systemd-analyze verify without a warning, and runs the compiled start command',
  { skip: hasCommand('systemd-analyze') ? false : 'systemd-analyze is not installed (Debian package systemd)' },
  async () => {
    const unit = await readFile(join(ROOT, 'config/gribswarm.service'), 'utf8')
    assert.ok(
      unit.split('\n').includes(`ExecStart=/usr/bin/node ${[...NODE_FLAGS, '/opt/gribswarm/bin/gribswarm.js'].join(' ')} start`),
      'the unit runs bin/gribswarm.js with its node flags',
    )
    // Verified as installed, but with this node and this checkout where /usr/bin/node and
    // /opt/gribswarm would be (verify checks that the command exists).
    const dir = await res.tempDir('gribswarm-unit-')
    const copy = join(dir, 'gribswarm.service')
    await writeFile(copy, unit.replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/gribswarm', ROOT.replace(/\/$/, '')))
    const verify = await res.run('systemd-analyze', ['verify', copy], 60_000)
    assert.equal(verify.code, 0, verify.output)
    const about = verify.output.split('\n').filter((line) => line.includes('gribswarm.service'))
    assert.deepEqual(about, [], verify.output)
  },
)
