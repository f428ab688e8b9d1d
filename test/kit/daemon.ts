// gribswarm's CLIs as child processes: startCli() is the one way the kit, the demo and the
// benchmark start them (in the repository root, this process's environment without its
// GRIBSWARM_* variables, plus the caller's). For the daemon: the command that runs it as
// `npm start` does (compiled) or from src/, its own config file (loopback ports, production
// defaults otherwise), and startDaemon(), which waits for it through /api/status.
import { readFileSync } from 'node:fs'
import { stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { StatusReport } from '../../src/daemon.ts'
import { loopbackConfig } from './config.ts'
import type { ChildHandle, Resources, StartOptions } from './resources.ts'
import { waitFor } from './wait.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export interface DaemonSetup {
  dataDir: string
  configPath: string
  httpPort: number
  trackerPort: number
  publicBaseUrl: string
}

export type { StatusReport } from '../../src/daemon.ts'

export type DaemonHandle = ChildHandle & { pid: number; setup: DaemonSetup; status: () => Promise<StatusReport> }

/** How the daemon is run: 'build' as `npm start` does (compiled JavaScript), 'tsx' from src/. */
export type DaemonRunner = 'build' | 'tsx'
/** The node arguments that run a CLI, and how to say it in the notes. */
export interface DaemonCommand {
  args: string[]
  how: string
}

/** The node flags every daemon runs with: those of bin/gribswarm.js's first line (`#!/usr/bin/env -S node FLAGS…`). */
export const NODE_FLAGS: string[] = readFileSync(join(ROOT, 'bin/gribswarm.js'), 'utf8')
  .split('\n', 1)[0]!
  .replace(/^#!\/usr\/bin\/env -S node\b/, '')
  .split(' ')
  .filter(Boolean)

/** One of the project's CLIs (src/cli/NAME.ts) through tsx, from the repository root; `imports`: modules node loads before it, after tsx (e.g. crash-hook.ts). */
export function cliCommand(name: string, imports: string[] = []): DaemonCommand {
  const args = [...NODE_FLAGS, '--import', 'tsx', ...imports.flatMap((module) => ['--import', module]), `src/cli/${name}.ts`]
  return { args, how: `node ${args.join(' ')}` }
}

export interface CliOptions {
  /** set for the child, over this process's environment */
  env?: Record<string, string>
  /** keep this process's GRIBSWARM_* variables (left out by default, so that a developer's settings cannot leak in) */
  keepGribswarmEnv?: boolean
  output?: StartOptions['output']
  /** runs node through another command, e.g. inside a network namespace (netns.ts daemonInNs) */
  wrap?: (command: string, args: string[]) => { command: string; args: string[] }
}

/** Starts `node <command.args> <args>` as a child of `res`, in the repository root. */
export function startCli(res: Resources, command: DaemonCommand, args: string[], options: CliOptions = {}): ChildHandle {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) if (options.keepGribswarmEnv || !name.startsWith('GRIBSWARM_')) env[name] = value
  Object.assign(env, options.env)
  const node = [...command.args, ...args]
  const run = options.wrap?.(process.execPath, node) ?? { command: process.execPath, args: node }
  return res.start(run.command, run.args, { cwd: ROOT, env, output: options.output })
}

/**
 * The node arguments that start the daemon. 'build' compiles tsconfig.build.json into a temp
 * directory that links node_modules, config and public, so the repository's own build/ is left
 * alone. Without a choice: 'build' where tsconfig.build.json exists.
 */
export async function daemonCommand(res: Resources, runner?: DaemonRunner): Promise<DaemonCommand> {
  runner ??= (await stat(join(ROOT, 'tsconfig.build.json')).then(
    () => true,
    () => false,
  ))
    ? 'build'
    : 'tsx'
  if (runner === 'tsx') return cliCommand('start')
  const dir = await res.tempDir('gribswarm-bench-build-')
  for (const name of ['package.json', 'node_modules', 'config', 'public']) await symlink(join(ROOT, name), join(dir, name))
  const tsc = await res.run(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(dir, 'build')],
    180_000,
    { cwd: ROOT },
  )
  if (tsc.code !== 0) throw new Error(`tsc -p tsconfig.build.json failed: ${tsc.stdout.slice(-2000)} ${tsc.stderr.slice(-2000)}`)
  return {
    args: [...NODE_FLAGS, join(dir, 'build/cli/start.js')],
    how: `node ${[...NODE_FLAGS, 'build/cli/start.js'].join(' ')}, compiled with tsconfig.build.json, as npm start runs it`,
  }
}

/**
 * Writes a config file for a child daemon: loopback ports, tracker on, no DHT, uTP on, no
 * scheduled pass before next year (the startup pass still runs), sections of `overrides`
 * merged over these.
 */
export async function writeDaemonConfig(
  res: Resources,
  name: string,
  overrides: Record<string, Record<string, unknown>>,
): Promise<DaemonSetup> {
  const dir = await res.tempDir(`gribswarm-bench-${name}-`)
  const dataDir = join(dir, 'data')
  const child = {
    tracker: { enabled: true },
    seed: { utp: true },
    disk: { budgetBytes: 100_000_000_000, minFreeBytes: 0 },
    schedule: { cron: '0 0 1 1 *' },
    log: { level: 'warn' },
  }
  const { values, httpPort, trackerPort, publicBaseUrl } = await loopbackConfig(dataDir, child, overrides)
  const configPath = join(dir, 'config.json')
  await writeFile(configPath, JSON.stringify(values, null, 2))
  return { dataDir, configPath, httpPort, trackerPort, publicBaseUrl }
}

/** Starts the daemon with GRIBSWARM_CONFIG = setup.configPath, and waits until `ready(status)`. */
export async function startDaemon(
  res: Resources,
  command: DaemonCommand,
  setup: DaemonSetup,
  ready: { what: string; check: (status: StatusReport) => boolean; timeoutMs: number },
): Promise<DaemonHandle> {
  const handle = startCli(res, command, [], { env: { GRIBSWARM_CONFIG: setup.configPath } })
  const pid = handle.child.pid
  if (pid === undefined) throw new Error('could not start the daemon')
  const status = async () => {
    if (exited) throw new Error(`the daemon (${setup.configPath}) exited: ${handle.stderr.slice(-3000)}`)
    const response = await fetch(`${setup.publicBaseUrl}/api/status`, { signal: AbortSignal.timeout(5000) })
    if (!response.ok) throw new Error(`${setup.publicBaseUrl}/api/status: HTTP ${response.status}`)
    return (await response.json()) as StatusReport
  }
  let exited = false
  void handle.exited.then(() => (exited = true))
  const outcome = await waitFor(
    `the daemon (${setup.configPath}) ${ready.what}`,
    async () => (exited ? 'exited' : ready.check(await status()) && 'ready'),
    ready.timeoutMs,
    200,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\ndaemon stderr: ${handle.stderr.slice(-2000)}`)
  })
  if (outcome === 'exited')
    throw new Error(`the daemon (${setup.configPath}) exited before it ${ready.what}: ${handle.stderr.slice(-2000)}`)
  return Object.assign(handle, { pid, setup, status })
}
