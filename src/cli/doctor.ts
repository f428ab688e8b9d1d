// `gribswarm doctor`: checks this machine and the configuration, one line per check, and exits
// 1 if any failed. The checks live in ../doctor.ts; the daemon runs them too as it starts.
import { parseArgs } from 'node:util'
import { exitStatus, formatResult, runChecks } from '../doctor.ts'
import { COMMON_OPTIONS, CONFIG_HELP, fail, helpOrVersion, loadOrExit } from './common.ts'

const HELP = `Usage: gribswarm doctor [--config FILE] [--skip-ports]
       npm run doctor -- [options]            (from a checkout)

Checks what a node needs, with the configuration the daemon would use, and prints one line
per check: OK, WARN or FAIL, what was found and, for a problem, how to fix it.

  port http, port tracker, port seed
                   http.port, tracker.port (when tracker.enabled) and seed.port can be
                   bound on their hosts (TCP; UDP too for the tracker and uTP)
  data directory   dataDir exists or can be made, and a file can be written in it
  disk budget      disk.budgetBytes + disk.minFreeBytes against the free space of the
                   data directory's filesystem (published files count toward the budget)
  gdal ccsds       gdal-async decodes a CCSDS-packed GRIB2 message, as Météo-France packs them
  broker ...       notify.brokerUrl and each mirror.brokers[].url accept a TCP connection
                   (no login; default ports amqp 5672, amqps 5671, mqtt 1883, mqtts 8883)
  public url       http.publicBaseUrl agrees with where HTTP listens

Options:
  -c, --config FILE   configuration file merged over config/default.json
      --skip-ports    leave the port checks out (e.g. beside the running daemon)
  -h, --help          this text
      --version       the version

Exit status: 0 when no check failed (warnings included), 1 when one failed, 2 for a
configuration error.

${CONFIG_HELP}
`

let args
try {
  args = parseArgs({ options: { config: { type: 'string', short: 'c' }, 'skip-ports': { type: 'boolean' }, ...COMMON_OPTIONS } }).values
} catch (err) {
  fail(`${(err as Error).message}\n\n${HELP}`)
}
helpOrVersion(args, HELP)
const { config } = loadOrExit(args.config)
const results = await runChecks(config, { ports: !args['skip-ports'] })
for (const result of results) process.stdout.write(`${formatResult(result)}\n`)
const count = (status: string) => results.filter((r) => r.status === status).length
process.stdout.write(`${count('ok')} ok, ${count('warn')} warnings, ${count('fail')} failed\n`)
process.exit(exitStatus(results))
