// The transports' topic mappings (src/amqp.ts, src/mqtt.ts) as sr3's moth/amqp.py and
// moth/mqtt.py map them, the choice of transport by URL scheme (src/broker.ts), and the
// configuration of brokers. The brokers themselves are in test/integration/mqtt.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { amqpBindingKey, amqpRoutingKey } from '../../src/amqp.ts'
import { transportOf } from '../../src/broker.ts'
import { loadConfig } from '../../src/config.ts'
import { mqttFilter, mqttTopic } from '../../src/mqtt.ts'
import { outgoing } from '../../src/notify.ts'
import { topicLevels } from '../../src/v03.ts'
import { REL_PATH } from '../kit/records.ts'

test('the transport is chosen by the URL scheme, as sr3 chooses it', () => {
  assert.equal(transportOf('amqp://guest:guest@127.0.0.1/'), 'amqp')
  assert.equal(transportOf('amqps://broker.test/vhost'), 'amqp')
  assert.equal(transportOf('mqtt://127.0.0.1:1883'), 'mqtt')
  assert.equal(transportOf('MQTTS://broker.test'), 'mqtt')
  assert.throws(
    () => transportOf('http://user:secret@broker.test'),
    (err: Error) => !err.message.includes('secret'),
  )
})

test('AMQP: the levels joined with ".", # and * in a level escaped as sr3 does, at most 255 bytes', () => {
  assert.equal(amqpRoutingKey(topicLevels(REL_PATH)), 'v03.20261123T00Z.arpege.01.SP1')
  assert.equal(amqpRoutingKey(['v03', 'a#b', 'c*d', '#', '*']), 'v03.a%23b.c%22d.%23.%22')
  assert.equal(amqpRoutingKey(topicLevels('f.grib2')), 'v03')
  assert.throws(() => amqpRoutingKey(['v03', 'd'.repeat(252)]), /longer than 255 bytes/)
  assert.equal(Buffer.byteLength(amqpRoutingKey(['v03', 'd'.repeat(251)])), 255)
})

test('AMQP: a binding pattern is used as it is, or translated from an MQTT filter', () => {
  assert.equal(amqpBindingKey('v03.*.arpege.01.SP1.#'), 'v03.*.arpege.01.SP1.#')
  assert.equal(amqpBindingKey('cache/a/wis2/+/data/core/#'), 'cache.a.wis2.*.data.core.#')
})

test('MQTT: the exchange is the first level, "/" between levels, # and + escaped (sr3 moth/mqtt.py)', () => {
  assert.equal(mqttTopic('xpublic', topicLevels(REL_PATH)), 'xpublic/v03/20261123T00Z/arpege/01/SP1')
  assert.equal(mqttTopic('xpublic', ['v03', 'a#b', 'c+d', 'e.f', 'g*h']), 'xpublic/v03/a%23b/c%2Bd/e.f/g*h', "a '.' stays inside its level")
  assert.equal(
    mqttTopic(undefined, ['origin', 'a', 'wis2', 'fr-meteofrance', 'data']),
    'origin/a/wis2/fr-meteofrance/data',
    'WIS2: no exchange level',
  )
})

test('MQTT: AMQP patterns become filters below the exchange, * → +; # only last', () => {
  assert.equal(mqttFilter('xpublic', 'v03.*.arpege.01.SP1.#'), 'xpublic/v03/+/arpege/01/SP1/#')
  assert.equal(mqttFilter('xpublic', 'v03.#'), 'xpublic/v03/#')
  assert.equal(mqttFilter('xpublic', 'v03/+/arpege/#'), 'xpublic/v03/+/arpege/#', 'an MQTT filter is taken as it is')
  assert.equal(mqttFilter(undefined, 'cache.a.wis2.*.data.core.#'), 'cache/a/wis2/+/data/core/#')
  assert.equal(mqttFilter('x', 'v03.a+b.c#d'), 'x/v03/a%2Bb/c%23d', 'literal wildcard characters match what posters escape')
  assert.throws(() => mqttFilter('xpublic', 'v03.#.SP1'), /'#' as the last level only/)
})

test('an outbox entry written before MQTT ({topic, body}) is posted with the levels of its routing key', () => {
  const body = { pubTime: '20261123T000000.000', baseUrl: 'http://n/data', relPath: 'a#b/c*d/f.grib2' }
  assert.deepEqual(outgoing({ topic: 'v03.a%23b.c%22d', body }), {
    topic: ['v03', 'a#b', 'c*d'],
    body: JSON.stringify(body),
    contentType: 'application/json',
  })
  const wnm = outgoing({
    topic: 'origin.a.wis2',
    levels: ['origin', 'a', 'wis2'],
    contentType: 'application/geo+json',
    body: body as never,
  })
  assert.deepEqual([wnm.topic, wnm.contentType], [['origin', 'a', 'wis2'], 'application/geo+json'])
  assert.throws(() => outgoing(null as never), /not an outbox entry/)
  assert.throws(() => outgoing({ body } as never), /not an outbox entry/)
})

test('config: brokers may be amqp(s) or mqtt(s); over MQTT a pattern may have # last only; wis2 needs a centre id', () => {
  const brokers = (url: string, topics: string[]) => ({ mirror: { brokers: [{ url, exchange: 'xpublic', topics }] } })
  const config = loadConfig({
    env: {},
    overrides: { notify: { brokerUrl: 'mqtts://u:p@broker.test:8883' }, ...brokers('mqtt://127.0.0.1', ['v03.*.arpege.#']) },
  })
  assert.equal(config.notify.brokerUrl, 'mqtts://u:p@broker.test:8883')
  assert.deepEqual(config.mirror.brokers[0], {
    url: 'mqtt://127.0.0.1',
    exchange: 'xpublic',
    topics: ['v03.*.arpege.#'],
    queue: '',
    profile: 'v03',
  })
  assert.equal(config.notify.profile, 'v03', 'the default keeps v03')
  assert.doesNotThrow(() => loadConfig({ env: {}, overrides: brokers('amqp://127.0.0.1', ['v03.#.SP1']) }), "AMQP's # may stand anywhere")
  assert.throws(
    () => loadConfig({ env: {}, overrides: brokers('mqtt://127.0.0.1', ['v03.#.SP1']) }),
    /mirror\.brokers\.0\.topics: over MQTT/,
  )
  assert.throws(() => loadConfig({ env: {}, overrides: { notify: { brokerUrl: 'http://broker.test' } } }), /notify\.brokerUrl/)
  assert.throws(() => loadConfig({ env: {}, overrides: { notify: { profile: 'wis2' } } }), /notify\.wis2\.centreId: required/)
  const wis2 = loadConfig({ env: { GRIBSWARM_NOTIFY__PROFILE: 'wis2', GRIBSWARM_NOTIFY__WIS2__CENTREID: 'fr-meteofrance' } })
  assert.deepEqual([wis2.notify.profile, wis2.notify.wis2.centreId, wis2.notify.wis2.channel], ['wis2', 'fr-meteofrance', 'origin'])
})
