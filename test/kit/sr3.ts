// The real MetPX-Sarracenia sr3 (3.00.56rc2), the reference implementation of v03, as a peer
// of gribswarm in the interoperability tests: a stock `sr3 subscribe` that downloads what a node
// posts, `sr3_post` and `sr3 watch` that announce files the way any Sarracenia pump does.
//
// sr3 is not packaged in Debian and PyPI is out of reach, so it comes from the tarball in
// ../shared/vendor/ (beside the repository, not inside it) and runs on Debian's python3 packages
// (SR3_DEBIAN_PACKAGES, installed by .ci/run), as ../shared/vendor/README.md describes. Tests ask
// sr3Available() first and skip, saying why, when it is absent.
//
// Sr3.create(res) unpacks it into a scratch directory (its HOME: configs in .config/sr3/, state
// in .cache/sr3/), removed by the cleanup registry; every sr3 process is a child registered in
// `res`. Everything talks to 127.0.0.1 only: other hosts are refused.
//
// What sr3 does is observed on disk (the files a subscribe downloaded) and on the broker (its
// queue bound), never in its log; the log is kept for the failure messages of the tests.
//
// Facts about 3.00.56rc2 the kit relies on, measured:
// - `sr.py foreground subscribe/NAME` runs the flow in a child (instance.py) and does not pass a
//   SIGTERM on to it: stopping means signalling that child, so the kit stops the process tree.
// - A subscribe does not declare its exchange: binding to a missing one fails (404 NOT_FOUND)
//   and is retried 2, 4, 8 ... s later. The kit declares it first (topic, durable: what both
//   gribswarm's notifier and sr3's posters declare).
// - A subscribe polls its queue (basic_get): the broker shows no consumer, only the binding.
// - credentials.conf is matched on scheme, host, port, user and vhost: the broker line must name
//   the same port as the credential line.
// - `sr3_post` of a path that does not exist posts nothing ("could not post"): a remove comes
//   from `sr3 watch` with fileEvents delete.
// - MQTT needs paho-mqtt >= 2.1.0 (bookworm has 1.6.1: scripts/sr3-paho.sh). A subscribe
//   subscribes to $share/<queueName>/<exchange>/<topicPrefix>/<subtopic> in a persistent session
//   (<queueName>_i01); run as `sr3 foreground` (instance 0) it declares that session and then
//   consumes nothing, so the kit runs instance 1 as `sr3 start` would. A message without the
//   MQTT v5 content type property stops the flow (AttributeError in _msgDecode, then a TypeError).
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { delimiter, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import amqp from 'amqplib'
import mqtt from 'mqtt'
import { v03Time } from '../../src/v03.ts'
import { rabbitmqctl } from './amqp.ts'
import { processTree } from './measure.ts'
import type { ChildHandle, Resources } from './resources.ts'
import { waitFor } from './wait.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** The vendored sr3, beside the repository (a fresh clone at /work/ci-check finds /work/shared). */
export const SR3_TARBALL = resolve(ROOT, '../shared/vendor/sarracenia-sr3-247fabae.tar.gz')
/** Debian's interpreter, which the python3-* packages below install into (not a pyenv shim). */
export const SR3_PYTHON = '/usr/bin/python3'
/** What sr3 imports, as Debian packages (../shared/vendor/README.md); .ci/run installs them. */
export const SR3_DEBIAN_PACKAGES = [
  'python3-appdirs',
  'python3-humanfriendly',
  'python3-humanize',
  'python3-jsonpickle',
  'python3-paramiko',
  'python3-psutil',
  'python3-watchdog',
  'python3-amqp',
  'python3-xattr',
]
const PYTHON_MODULES = ['appdirs', 'humanfriendly', 'humanize', 'jsonpickle', 'paramiko', 'psutil', 'watchdog', 'amqp', 'xattr']
/**
 * paho-mqtt >= 2.1.0, which sr3's MQTT needs: Debian bookworm has 1.6.1, so scripts/sr3-paho.sh
 * unpacks trixie's here, first on sr3's PYTHONPATH.
 */
export const SR3_PAHO_DIR = join(process.env.SR3_PAHO_DIR ?? '/opt/gribswarm-test/paho-mqtt', 'usr/lib/python3/dist-packages')

/** Prints the modules of argv that cannot be imported. */
const IMPORT_PROBE = `
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        missing.append(name)
print(' '.join(missing))
`

let availability: { reason: string | undefined } | undefined
let mqttAvailability: { reason: string | undefined } | undefined

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)))
}

/**
 * undefined when sr3 can run here over AMQP, else why not (for test's skip option): the vendored
 * tarball absent, Debian's python3 or one of its packages missing, no rabbitmqctl to see a
 * subscribe's binding with. Checked once per process.
 */
export function sr3Available(): string | undefined {
  availability ??= { reason: checkAvailability() }
  return availability.reason
}

/** undefined when sr3 can also speak MQTT here (paho-mqtt >= 2.1.0 on its path), else why not. */
export function sr3MqttAvailable(): string | undefined {
  mqttAvailability ??= { reason: sr3Available() ?? checkPaho() }
  return mqttAvailability.reason
}

function checkAvailability(): string | undefined {
  if (!existsSync(SR3_TARBALL)) return `sr3 is not there: ${SR3_TARBALL} is absent (it lives in shared/vendor/, beside the repository)`
  if (!existsSync(SR3_PYTHON)) return `sr3 needs Debian's ${SR3_PYTHON}, absent here`
  const probe = spawnSync(SR3_PYTHON, ['-c', IMPORT_PROBE, ...PYTHON_MODULES], { encoding: 'utf8', timeout: 30_000 })
  if (probe.status !== 0) return `sr3 kit: ${SR3_PYTHON} could not check its modules: ${probe.error?.message ?? probe.stderr}`
  const missing = probe.stdout.split(/\s+/).filter(Boolean)
  if (missing.length > 0) {
    return `sr3 needs python modules missing from ${SR3_PYTHON}: ${missing.join(', ')} (apt-get install ${SR3_DEBIAN_PACKAGES.join(' ')})`
  }
  if (!onPath('rabbitmqctl')) return 'the sr3 tests need rabbitmqctl (rabbitmq-server) to see when a subscribe has bound its queue'
  if (!onPath('tar')) return 'unpacking sr3 needs tar'
  return undefined
}

function checkPaho(): string | undefined {
  const probe = spawnSync(SR3_PYTHON, ['-c', 'import paho.mqtt; print(paho.mqtt.__version__)'], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH, PYTHONPATH: SR3_PAHO_DIR },
  })
  const version = probe.status === 0 ? probe.stdout.trim() : 'none'
  const [major = 0, minor = 0] = version.split('.').map(Number)
  if (major > 2 || (major === 2 && minor >= 1)) return undefined
  return `sr3 speaks MQTT only with paho-mqtt >= 2.1.0, and ${SR3_PYTHON} finds ${version} (Debian bookworm has 1.6.1): bash scripts/sr3-paho.sh puts trixie's 2.1.0 in ${SR3_PAHO_DIR}`
}

/** A value in an sr3 config file: booleans are on/off, an array is one line per element. */
export type Sr3Value = string | number | boolean | string[]
/** Further sr3 options, written as `name value` lines (e.g. logLevel: 'debug', accept: ['.*grib2']). */
export type Sr3Options = Record<string, Sr3Value | undefined>

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

function loopbackOnly(url: URL, what: string): void {
  if (!LOOPBACK.has(url.hostname)) throw new Error(`sr3 kit: ${what} ${url.origin} is not on loopback; the tests talk to 127.0.0.1 only`)
}

/**
 * The broker as sr3 wants it: the password in credentials.conf, the user alone on the broker
 * line. An MQTT broker without a user (the anonymous Mosquitto of scripts/broker.sh) gets
 * anonymous:anonymous: sr3's MQTT client always sends a user and a password.
 */
function brokerParts(brokerUrl: string) {
  const url = new URL(brokerUrl)
  const mqtt = url.protocol === 'mqtt:' || url.protocol === 'mqtts:'
  if (!mqtt && url.protocol !== 'amqp:' && url.protocol !== 'amqps:') throw new Error(`sr3 kit: ${brokerUrl} is neither AMQP nor MQTT`)
  loopbackOnly(url, 'broker')
  if (mqtt && !url.username) {
    url.username = 'anonymous'
    url.password = 'anonymous'
  }
  const user = decodeURIComponent(url.username) || 'anonymous'
  const vhost = url.pathname === '' || url.pathname === '/' ? '/' : decodeURIComponent(url.pathname.slice(1))
  const path = url.pathname === '' ? '/' : url.pathname
  const hostPort = `${url.hostname}${url.port ? `:${url.port}` : ''}`
  return {
    mqtt,
    user,
    vhost,
    credential: `${url.protocol}//${url.username}:${url.password}@${hostPort}${path}`,
    broker: `${url.protocol}//${url.username}@${hostPort}${path}`,
  }
}

function configLines(options: Array<[string, Sr3Value | undefined]>): string {
  const lines: string[] = []
  for (const [name, value] of options) {
    if (value === undefined) continue
    for (const one of Array.isArray(value) ? value : [value]) {
      const text = typeof one === 'boolean' ? (one ? 'on' : 'off') : String(one)
      if (/[\r\n]/.test(text) || !/^\w+$/.test(name)) throw new Error(`sr3 kit: bad option ${name} ${text}`)
      lines.push(`${name} ${text}`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** Options that filter what is taken, written after `directory` (sr3 applies `directory` to the accepts that follow it). */
const FILTERS = new Set(['accept', 'reject', 'acceptUnmatched'])

/** Whether `pid` is still one of ours: running, from this scratch directory (a pid can be reused). */
async function isOurs(pid: number, scratch: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  const status = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return cmdline.includes(scratch) && !/^\d+ \(.*\) Z/.test(status)
}

/** The inodes a process tree watches through inotify (watchdog's observer), from /proc/PID/fdinfo. */
async function inotifyInodes(pids: number[]): Promise<Set<number>> {
  const inodes = new Set<number>()
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) !== 'anon_inode:inotify') continue
      const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '')
      for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+)/gm)) inodes.add(Number.parseInt(m[1]!, 16))
    }
  }
  return inodes
}

/** Every directory under `dir`, itself included. */
async function directories(dir: string): Promise<string[]> {
  const found = [dir]
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isDirectory()) found.push(join(entry.parentPath, entry.name))
  }
  return found
}

/** Every regular file under `dir`, as paths relative to it ('/'-separated), sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return []
    throw err
  })
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split('\\').join('/'))
    .sort()
}

/** Queues bound to `exchange` on the broker (rabbitmqctl; the default exchange's implicit bindings left out). */
export async function queuesBoundTo(exchange: string, vhost = '/'): Promise<Array<{ queue: string; routingKey: string }>> {
  const { stdout } = await rabbitmqctl([
    'list_bindings',
    '-q',
    '--no-table-headers',
    '-p',
    vhost,
    'source_name',
    'destination_kind',
    'destination_name',
    'routing_key',
  ])
  return stdout
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([source, kind]) => source === exchange && kind === 'queue')
    .map(([, , queue, routingKey]) => ({ queue: queue!, routingKey: routingKey ?? '' }))
}

/** Messages in a queue, ready and delivered-but-unacknowledged together (rabbitmqctl); undefined when there is no such queue. */
export async function queueMessages(queue: string, vhost = '/'): Promise<number | undefined> {
  const { stdout } = await rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', vhost, 'name', 'messages'])
  for (const line of stdout.split('\n')) {
    const [name, messages] = line.split('\t')
    if (name === queue) return Number(messages)
  }
  return undefined
}

/** One sr3 flow running in the foreground (subscribe, watch). */
export interface Sr3Flow {
  /** e.g. 'subscribe/sub1' */
  readonly config: string
  /** its config file */
  readonly configPath: string
  /** stdout and stderr of the flow, for the failure messages of the tests (never assert on it) */
  readonly logPath: string
  readonly handle: ChildHandle
  /** Whether sr.py has exited. */
  exited(): boolean
  /** The last `chars` of its log. */
  log(chars?: number): Promise<string>
  /** SIGTERM to the flow (sr.py's child) so that it closes cleanly, then to sr.py; SIGKILL for what is left after graceMs. */
  stop(graceMs?: number): Promise<void>
}

export interface Sr3Subscribe extends Sr3Flow {
  /** its queue on the broker, as sr3 would name it (q_<user>.…); over MQTT, its shared-subscription group and session */
  readonly queue: string
  /** where it downloads: files land at directory/relPath (mirror on) */
  readonly directory: string
  /** The files it has downloaded, relative to its directory, sorted. */
  files(): Promise<string[]>
  /** One downloaded file's bytes. */
  read(relPath: string): Promise<Buffer>
}

export interface SubscribeOptions {
  /** amqp://user:password@127.0.0.1:5672 or mqtt://127.0.0.1:1883 (anonymous) */
  broker: string
  exchange: string
  /** default 'v03' */
  topicPrefix?: string
  /** default '#'; several: one binding each */
  subtopic?: string | string[]
  /** where it downloads (made if absent) */
  directory: string
  /** config name; default sub<N> */
  name?: string
  /** how long to wait for the queue's bindings (AMQP) or a probe (MQTT); default 30 s */
  bindTimeoutMs?: number
  /** further sr3 options (defaults here: mirror on, accept .*, logLevel info) */
  options?: Sr3Options
}

export interface PostOptions {
  broker: string
  exchange: string
  /** post_baseUrl: where subscribers download from (http://127.0.0.1:PORT/) */
  baseUrl: string
  /** post_baseDir: relPath is `path` relative to it; default: path's directory */
  postBaseDir?: string
  /** the file to announce */
  path: string
  /** default 'v03' */
  topicPrefix?: string
  /** config name; default post<N> */
  name?: string
  /** default 60 s */
  timeoutMs?: number
  options?: Sr3Options
}

export interface PostResult {
  /** its config file */
  configPath: string
  /** sr3_post's output, for failure messages only */
  output: string
  seconds: number
}

export interface WatchOptions {
  broker: string
  exchange: string
  baseUrl: string
  /** the directory watched (recursively); also post_baseDir unless postBaseDir is given */
  directory: string
  postBaseDir?: string
  /** sr3's fileEvents; default its own (create, delete, link, mkdir, modify, rmdir) */
  fileEvents?: Array<'create' | 'delete' | 'link' | 'mkdir' | 'modify' | 'rmdir'>
  topicPrefix?: string
  name?: string
  /** how long to wait until every directory under `directory` is watched; default 30 s */
  readyTimeoutMs?: number
  /** further sr3 options (default here: sleep 1, so that events are posted within a second) */
  options?: Sr3Options
}

/** A scratch sr3 installation: its own HOME, configs and state, removed at cleanup. */
export class Sr3 {
  private count = 0
  private readonly credentials = new Set<string>()

  private constructor(
    private readonly res: Resources,
    /** the scratch directory: sr3's sources, HOME, logs */
    readonly dir: string,
  ) {}

  /** sr3's package, unpacked from SR3_TARBALL */
  get sources(): string {
    return join(this.dir, 'sarracenia-sr3')
  }

  /**
   * The working directory of sr3's processes: empty, since `python3 -c` puts it first on
   * sys.path and sr3 loads its plugins by module name (a `log/` there hid its flowcb.log:
   * "plugin log did not load", and sr3_post exited 0 having posted nothing).
   */
  get cwd(): string {
    return join(this.dir, 'run')
  }

  /** Where the kit keeps each sr3 process's output */
  get logs(): string {
    return join(this.dir, 'logs')
  }

  /** HOME of every sr3 process started here */
  get home(): string {
    return join(this.dir, 'home')
  }

  /** The environment sr3 runs in: PYTHONPATH on the unpacked sources, its own HOME, USER set (or queue names hold a literal ${USER}). */
  get env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      TZ: 'UTC',
      // paho-mqtt 2.1 before Debian's 1.6.1 (dist-packages comes later on sys.path)
      PYTHONPATH: [SR3_PAHO_DIR, this.sources].join(delimiter),
      PYTHONDONTWRITEBYTECODE: '1',
      HOME: this.home,
      USER: userInfo().username,
    }
  }

  /**
   * Unpacks sr3 into a scratch directory, removed when `res` is cleaned up (set
   * GRIBSWARM_KEEP_SR3=1 to keep it for a look at the configs and logs). Call sr3Available() first.
   */
  static async create(res: Resources): Promise<Sr3> {
    const reason = sr3Available()
    if (reason) throw new Error(reason)
    const dir = await mkdtemp(join(tmpdir(), 'gribswarm-sr3-'))
    res.defer(`remove the sr3 scratch directory ${dir}`, () =>
      process.env.GRIBSWARM_KEEP_SR3
        ? process.stderr.write(`sr3 scratch directory kept: ${dir}\n`)
        : rm(dir, { recursive: true, force: true }),
    )
    const tar = await res.run('tar', ['xzf', SR3_TARBALL, '-C', dir], 60_000)
    if (tar.code !== 0) throw new Error(`unpacking ${SR3_TARBALL} failed: ${tar.stderr}`)
    const sr3 = new Sr3(res, dir)
    await mkdir(join(sr3.home, '.config', 'sr3'), { recursive: true })
    await mkdir(sr3.cwd, { recursive: true })
    await mkdir(sr3.logs, { recursive: true })
    return sr3
  }

  /**
   * A stock `sr3 subscribe` in the foreground, resolved once it receives what is posted: over
   * AMQP when its queue is bound to every subtopic, over MQTT when it has downloaded a probe.
   */
  async startSubscribe(o: SubscribeOptions): Promise<Sr3Subscribe> {
    const name = o.name ?? `sub${++this.count}`
    const b = await this.useBroker(o.broker)
    const topicPrefix = o.topicPrefix ?? 'v03'
    const subtopics = [o.subtopic ?? '#'].flat()
    const queue = `q_${b.user}.gribswarm-test.${name}.${randomBytes(4).toString('hex')}`
    await mkdir(o.directory, { recursive: true })
    const extra = Object.entries({ logLevel: 'info', mirror: true, accept: '.*', ...o.options })
    const text = configLines([
      ['broker', b.broker],
      ['exchange', o.exchange],
      ['topicPrefix', topicPrefix],
      ['queueName', queue],
      ...extra.filter(([k]) => !FILTERS.has(k)),
      ['subtopic', subtopics],
      ['directory', o.directory],
      ...extra.filter(([k]) => FILTERS.has(k)),
    ])
    let flow: Sr3Flow
    if (b.mqtt) {
      flow = await this.startFlow('subscribe', name, text, 1)
      await this.probeUntilReceived(flow, o, topicPrefix).catch(async (err: Error) => {
        throw new Error(`${err.message}\nits log (${flow.logPath}):\n${await flow.log()}`)
      })
    } else {
      flow = await this.declareThenStart(
        o,
        b.vhost,
        queue,
        subtopics.map((sub) => `${topicPrefix}.${sub}`),
        name,
        text,
      )
    }
    return Object.assign(flow, {
      queue,
      directory: o.directory,
      files: () => filesUnder(o.directory),
      read: (relPath: string) => readFile(join(o.directory, relPath)),
    })
  }

  /** `sr3_post` of one file, once: resolves when it exits 0, rejects with its output otherwise. */
  async post(o: PostOptions): Promise<PostResult> {
    const name = o.name ?? `post${++this.count}`
    const b = await this.useBroker(o.broker)
    loopbackOnly(new URL(o.baseUrl), 'baseUrl')
    const text = configLines([
      ['post_broker', b.broker],
      ['post_exchange', o.exchange],
      ['post_topicPrefix', o.topicPrefix ?? 'v03'],
      ['post_baseUrl', o.baseUrl],
      ['post_baseDir', o.postBaseDir ?? dirname(o.path)],
      ...Object.entries({ logLevel: 'info', ...o.options }),
    ])
    const configPath = await this.writeConfig('post', name, text)
    const result = await this.res.run(
      SR3_PYTHON,
      ['-c', 'from sarracenia.sr_post import main; main()', '-c', name, o.path],
      o.timeoutMs ?? 60_000,
      {
        cwd: this.cwd,
        env: this.env,
      },
    )
    await writeFile(join(this.logs, `post_${name}.log`), result.output)
    if (result.code !== 0 || result.timedOut) {
      throw new Error(
        `sr3_post -c ${name} ${o.path} ${result.timedOut ? 'timed out' : `exited with ${result.code ?? result.signal}`}:\n${result.output.slice(-4000)}`,
      )
    }
    return { configPath, output: result.output, seconds: result.seconds }
  }

  /**
   * A stock `sr3 watch` on a directory, resolved once every directory under it is watched
   * (watchdog's inotify watches, read in /proc: a watch shows nothing on the broker). Files
   * there before it starts are not posted (post_on_start is off); later events are, per fileEvents.
   */
  async startWatch(o: WatchOptions): Promise<Sr3Flow> {
    const name = o.name ?? `watch${++this.count}`
    const b = await this.useBroker(o.broker)
    loopbackOnly(new URL(o.baseUrl), 'baseUrl')
    await mkdir(o.directory, { recursive: true })
    const text = configLines([
      ['post_broker', b.broker],
      ['post_exchange', o.exchange],
      ['post_topicPrefix', o.topicPrefix ?? 'v03'],
      ['post_baseUrl', o.baseUrl],
      ['post_baseDir', o.postBaseDir ?? o.directory],
      ['fileEvents', o.fileEvents?.join(',')],
      ...Object.entries({ logLevel: 'info', sleep: 1, ...o.options }),
      ['path', o.directory],
    ])
    const flow = await this.startFlow('watch', name, text)
    const inodes = await Promise.all((await directories(o.directory)).map(async (d) => (await stat(d)).ino))
    await waitFor(
      `sr3 ${flow.config} to watch every directory under ${o.directory}`,
      async () => {
        if (flow.exited()) return 'exited'
        const watched = await inotifyInodes(await processTree(flow.handle.child.pid!))
        return inodes.every((ino) => watched.has(ino)) && 'watching'
      },
      o.readyTimeoutMs ?? 30_000,
      100,
    )
      .then((outcome) => {
        if (outcome === 'exited') throw new Error(`sr3 ${flow.config} exited before watching ${o.directory}`)
      })
      .catch(async (err: Error) => {
        throw new Error(`${err.message}\nits log (${flow.logPath}):\n${await flow.log()}`)
      })
    return flow
  }

  /**
   * AMQP: declares the exchange (sr3 does not declare a subscribe's), starts the flow and
   * resolves once the broker shows its queue bound to every routing key.
   */
  private async declareThenStart(o: SubscribeOptions, vhost: string, queue: string, keys: string[], name: string, text: string) {
    const connection = await amqp.connect(o.broker)
    try {
      const channel = await connection.createChannel()
      await channel.assertExchange(o.exchange, 'topic', { durable: true })
    } finally {
      await connection.close()
    }
    // Runs after the flow is stopped (cleanup undoes in reverse): the durable queue would outlive the test.
    this.res.defer(`delete sr3's queue ${queue}`, async () => {
      const c = await amqp.connect(o.broker)
      try {
        await (await c.createChannel()).deleteQueue(queue)
      } finally {
        await c.close()
      }
    })
    const flow = await this.startFlow('subscribe', name, text)
    const outcome = await waitFor(
      `sr3 ${flow.config} to bind ${queue} to ${o.exchange} (${keys.join(', ')})`,
      async () => {
        if (flow.exited()) return 'exited'
        const bound = (await queuesBoundTo(o.exchange, vhost)).filter((x) => x.queue === queue).map((x) => x.routingKey)
        return keys.every((key) => bound.includes(key)) && 'bound'
      },
      o.bindTimeoutMs ?? 30_000,
      250,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\nits log (${flow.logPath}):\n${await flow.log()}`)
    })
    if (outcome === 'exited')
      throw new Error(`sr3 ${flow.config} exited before binding its queue\nits log (${flow.logPath}):\n${await flow.log()}`)
    return flow
  }

  /**
   * MQTT: Mosquitto has no rabbitmqctl to show a subscription, so the kit posts probes (v03
   * messages for small files a loopback server of its own serves) until the subscribe has
   * downloaded one; then it waits for the last probe posted (messages keep their order) and
   * removes the probes from the subscribe's directory, which is left as it was.
   */
  private async probeUntilReceived(flow: Sr3Flow, o: SubscribeOptions, topicPrefix: string): Promise<void> {
    const body = Buffer.from('gribswarm test kit: subscription probe\n')
    const server = createServer((req, reply) => {
      reply.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length }).end(req.method === 'HEAD' ? undefined : body)
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    const client = await mqtt.connectAsync(o.broker, { protocolVersion: 5, reconnectPeriod: 0 })
    const probeDir = `gribswarm-kit-probe-${randomBytes(4).toString('hex')}`
    try {
      const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
      const identity = { method: 'sha512', value: createHash('sha512').update(body).digest('base64') }
      let posted = 0
      const post = () => {
        const relPath = `${probeDir}/probe-${++posted}`
        const message = { pubTime: v03Time(new Date()), baseUrl, relPath, identity, size: body.length }
        // sr3 reads the content type property of every MQTT message: one without it kills the flow.
        return client.publishAsync([o.exchange, topicPrefix, probeDir].join('/'), JSON.stringify(message), {
          qos: 1,
          properties: { contentType: 'application/json' },
        })
      }
      const received = async () => (await filesUnder(join(o.directory, probeDir))).length > 0
      const outcome = await waitFor(
        `sr3 ${flow.config} to subscribe on ${o.broker} (${o.exchange}/${topicPrefix}/…): a probe posted there to be downloaded`,
        async () => {
          if (flow.exited()) return 'exited'
          if (await received()) return 'received'
          await post()
          return false
        },
        o.bindTimeoutMs ?? 30_000,
        1000,
      )
      if (outcome === 'exited') throw new Error(`sr3 ${flow.config} exited before subscribing`)
      const last = `probe-${posted}`
      await waitFor(
        `sr3 ${flow.config} to download the last probe (${last})`,
        async () => existsSync(join(o.directory, probeDir, last)),
        30_000,
        100,
      )
      await rm(join(o.directory, probeDir), { recursive: true, force: true })
    } finally {
      await client.endAsync()
      await new Promise<void>((done) => server.close(() => done()))
    }
  }

  /** Adds the broker's credential to credentials.conf (once) and returns how configs name it. */
  private async useBroker(brokerUrl: string) {
    const parts = brokerParts(brokerUrl)
    if (!this.credentials.has(parts.credential)) {
      this.credentials.add(parts.credential)
      await writeFile(join(this.home, '.config', 'sr3', 'credentials.conf'), `${[...this.credentials].join('\n')}\n`, { mode: 0o600 })
    }
    return parts
  }

  /** $HOME/.config/sr3/<component>/<name>.conf, and $HOME/.cache/sr3/<component>/<name>/ as `sr3 add` would make it. */
  private async writeConfig(component: string, name: string, text: string): Promise<string> {
    if (!/^[\w-]+$/.test(name)) throw new Error(`sr3 kit: bad config name ${name}`)
    const dir = join(this.home, '.config', 'sr3', component)
    await mkdir(dir, { recursive: true })
    await mkdir(join(this.home, '.cache', 'sr3', component, name), { recursive: true })
    const path = join(dir, `${name}.conf`)
    await writeFile(path, text)
    return path
  }

  /**
   * `sr3 foreground CONFIG`; with `instance`, the process `sr3 start` launches for that instance
   * (`instance.py --no N`), in the foreground. An MQTT subscribe needs the latter: as instance 0
   * (foreground) sr3 3.00.56rc2 declares the MQTT session of instance 1 and then consumes nothing.
   */
  private async startFlow(component: 'subscribe' | 'watch', name: string, text: string, instance?: number): Promise<Sr3Flow> {
    const configPath = await this.writeConfig(component, name, text)
    const config = `${component}/${name}`
    const logPath = join(this.logs, `${component}_${name}.log`)
    const log = createWriteStream(logPath, { flags: 'a' })
    const command =
      instance === undefined
        ? [join(this.sources, 'sarracenia', 'sr.py'), 'foreground', config]
        : [join(this.sources, 'sarracenia', 'instance.py'), '--no', String(instance), 'foreground', config]
    const handle = this.res.start(SR3_PYTHON, command, {
      cwd: this.cwd,
      env: this.env,
    })
    handle.child.stdout?.on('data', (chunk: Buffer) => log.write(chunk))
    handle.child.stderr?.on('data', (chunk: Buffer) => log.write(chunk))
    handle.child.once('close', () => log.end())
    const pid = handle.child.pid
    if (pid === undefined) throw new Error(`could not start sr3 ${config}`)
    const exited = () => handle.child.exitCode !== null || handle.child.signalCode !== null
    // sr.py's children seen so far: after sr.py is gone (the registry's own SIGTERM reaches sr.py
    // alone) they can no longer be found from it.
    const seen = new Set<number>()
    const tree = async () => {
      for (const p of await processTree(pid)) if (p !== pid) seen.add(p)
      const alive = []
      for (const p of seen) if (await isOurs(p, this.dir)) alive.push(p)
      return alive
    }
    const signal = (pids: number[], sig: NodeJS.Signals) => {
      for (const p of pids) {
        try {
          process.kill(p, sig)
        } catch {
          // gone meanwhile
        }
      }
    }
    const stop = async (graceMs = 10_000) => {
      const deadline = Date.now() + graceMs
      signal(await tree(), 'SIGTERM') // the flow closes, then sr.py, which waits for it, exits
      let parentSignalled = false
      for (;;) {
        const left = await tree()
        if (left.length === 0 && exited()) break
        if (Date.now() > deadline) {
          signal(left, 'SIGKILL')
          await handle.stop(0)
          break
        }
        if (left.length === 0 && !parentSignalled) {
          parentSignalled = true
          handle.child.kill('SIGTERM')
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    // Record the flow's process as soon as sr.py has started it.
    void waitFor(`sr3 ${config} to start its flow`, async () => exited() || (await tree()).length > 0, 30_000, 100).catch(() => {})
    this.res.defer(`stop sr3 ${config}`, () => stop(5000))
    return {
      config,
      configPath,
      logPath,
      handle,
      exited,
      stop,
      log: async (chars = 8000) => (await readFile(logPath, 'utf8').catch(() => '')).slice(-chars),
    }
  }
}
