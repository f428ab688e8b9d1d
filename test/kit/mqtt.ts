// The real Mosquitto the MQTT tests talk to (started by scripts/broker.sh start, as .ci/run
// does), a plain subscriber and a raw poster, and a restart of the broker.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { waitFor } from './wait.ts'

export const MQTT_BROKER = process.env.GRIBSWARM_TEST_MQTT ?? 'mqtt://127.0.0.1:1883'
const run = promisify(execFile)

export interface MqttReceived {
  topic: string
  contentType?: string
  payloadFormatIndicator?: boolean
  body: unknown
}

/** A clean-session subscriber to `filter`, QoS 1: what it receives, in order. */
export async function mqttSubscribe(filter: string) {
  const client = await mqtt.connectAsync(MQTT_BROKER, { protocolVersion: 5, reconnectPeriod: 0 })
  const received: MqttReceived[] = []
  client.on('message', (topic, payload, packet) => {
    let body: unknown
    try {
      body = JSON.parse(payload.toString())
    } catch {
      body = payload.toString()
    }
    received.push({
      topic,
      contentType: packet.properties?.contentType,
      payloadFormatIndicator: packet.properties?.payloadFormatIndicator,
      body,
    })
  })
  await client.subscribeAsync(filter, { qos: 1 })
  return { received, close: () => client.endAsync() }
}

/** Posts raw bytes on a topic, QoS 1, as anyone allowed to post there could. */
export async function mqttPost(messages: Array<{ topic: string; body: string | Buffer }>): Promise<void> {
  const client = await mqtt.connectAsync(MQTT_BROKER, { protocolVersion: 5, reconnectPeriod: 0 })
  try {
    for (const { topic, body } of messages) await client.publishAsync(topic, body, { qos: 1 })
  } finally {
    await client.endAsync()
  }
}

/** Stops Mosquitto (it saves its persistence file) and starts it again with scripts/broker.sh. */
export async function restartMosquitto(): Promise<void> {
  const dir = process.env.GRIBSWARM_MOSQUITTO_DIR ?? '/tmp/gribswarm-mosquitto'
  const pid = Number((await readFile(`${dir}/mosquitto.pid`, 'utf8')).trim())
  process.kill(pid, 'SIGTERM')
  await waitFor(
    'mosquitto to stop',
    () => {
      try {
        process.kill(pid, 0)
        return false
      } catch {
        return true
      }
    },
    10_000,
  )
  await run('bash', [new URL('../../scripts/broker.sh', import.meta.url).pathname, 'start'])
}
