// The one configuration builder of the tests, the demo and the benchmark: gribswarm on
// loopback (HTTP and tracker on free 127.0.0.1 ports, peers on a port the system picks, no
// DHT), with each caller's own sections merged over it. loadLoopbackConfig() gives a Config for
// a daemon in this process (tests, the notify and publishing scenarios); loopbackConfig() the
// values to write into a config file for a daemon child (daemon.ts writeDaemonConfig, the demo).
import { loadConfig, type Config } from '../../src/config.ts'
import { freePorts } from './wait.ts'

/** Configuration sections by name (source, fetch, seed ...), or dataDir. */
export type ConfigSections = Record<string, unknown>

/**
 * `layers` merged over `base` in order, one section deep: an object section is merged key by
 * key, anything else (dataDir, an array, null) replaces what was there.
 */
export function mergeSections(base: ConfigSections, ...layers: ConfigSections[]): Record<string, any> {
  const merged: Record<string, any> = { ...base }
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      merged[key] = typeof value === 'object' && value && !Array.isArray(value) ? { ...merged[key], ...value } : value
    }
  }
  return merged
}

export interface LoopbackConfig {
  /** the configuration: loadConfig's overrides, or a config file's content */
  values: Record<string, any>
  httpPort: number
  trackerPort: number
  /** http://127.0.0.1:<httpPort> */
  publicBaseUrl: string
}

/** gribswarm on loopback in `dataDir`, `layers` merged over it in order (mergeSections). */
export async function loopbackConfig(dataDir: string, ...layers: ConfigSections[]): Promise<LoopbackConfig> {
  const [httpPort, trackerPort] = (await freePorts(2)) as [number, number]
  const publicBaseUrl = `http://127.0.0.1:${httpPort}`
  const base = {
    dataDir,
    tracker: { host: '127.0.0.1', port: trackerPort },
    seed: { port: 0, dht: false },
    http: { host: '127.0.0.1', port: httpPort, publicBaseUrl },
  }
  return { values: mergeSections(base, ...layers), httpPort, trackerPort, publicBaseUrl }
}

/** The same as a Config, for a daemon in this process; the environment is ignored (GRIBSWARM_* included). */
export async function loadLoopbackConfig(dataDir: string, ...layers: ConfigSections[]): Promise<Config> {
  return loadConfig({ env: {}, overrides: (await loopbackConfig(dataDir, ...layers)).values })
}
