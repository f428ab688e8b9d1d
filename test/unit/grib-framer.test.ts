import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GribFramer, InvalidFileError, type FramedMessage } from '../../src/grib-framer.ts'
import { parseGribMessage } from '../../src/inventory.ts'
import { gribMessage } from '../kit/grib-message.ts'

/** A message with `dataBytes` of data in its section 7 (and a 2-byte section 2). */
function withData(hour: number, dataBytes: number): Buffer {
  const message = gribMessage({ category: 0, number: 0, hour, level: { type: 103, value: 2 } })
  const s7 = 16 + message.subarray(16).indexOf(Buffer.from([0, 0, 0, 5, 7]))
  const data = Buffer.alloc(5 + dataBytes, 0xab)
  data.writeUInt32BE(data.length, 0)
  data[4] = 7
  const local = Buffer.from([0, 0, 0, 7, 2, 1, 2])
  const out = Buffer.concat([message.subarray(0, 16 + 21), local, message.subarray(16 + 21, s7), data, Buffer.from('7777')])
  out.writeBigUInt64BE(BigInt(out.length), 8)
  return out
}

/** Frames `bytes` fed in chunks of `size`; the messages, or the error. */
function frame(bytes: Buffer, size = bytes.length): FramedMessage[] {
  const messages: FramedMessage[] = []
  const framer = new GribFramer('f.grib2', (m) => messages.push(m))
  for (let at = 0; at < bytes.length; at += size) framer.update(bytes.subarray(at, at + size))
  framer.end()
  return messages
}

const file = Buffer.concat([withData(0, 100_000), withData(3, 0), withData(6, 17)])

test('messages are framed the same whatever the chunks, each with a head that parses as the message does', () => {
  const whole = frame(file)
  assert.deepEqual(
    whole.map(({ number, start, length }) => ({ number, start, length })),
    [
      { number: 1, start: 0, length: withData(0, 100_000).length },
      { number: 2, start: withData(0, 100_000).length, length: withData(3, 0).length },
      { number: 3, start: withData(0, 100_000).length + withData(3, 0).length, length: withData(6, 17).length },
    ],
  )
  for (const m of whole) {
    const message = file.subarray(m.start, m.start + m.length)
    assert.deepEqual(parseGribMessage(m.head, 'head'), parseGribMessage(message, 'message'))
    assert.ok(m.head.length < 200, `a head holds no data: ${m.head.length} bytes`)
    assert.equal(Number(m.head.readBigUInt64BE(8)), m.head.length, 'a head is a GRIB2 message of its own length')
  }
  for (const size of [1, 2, 3, 5, 7, 16, 21, 4096, 65536]) assert.deepEqual(frame(file, size), whole, `chunks of ${size}`)
})

test('GRIB1 messages are framed by their length and end marker alone', () => {
  const grib1 = Buffer.from('GRIB\x00\x00\x1c\x01' + '\x00'.repeat(16) + '7777', 'latin1')
  const [m] = frame(Buffer.concat([grib1, grib1]), 3)
  assert.deepEqual(m!.head, grib1.subarray(0, 16))
  assert.equal(frame(Buffer.concat([grib1, grib1])).length, 2)
})

test('a cut, misframed or foreign file is an error naming the message and the byte', () => {
  const one = withData(0, 50)
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.alloc(0), /f\.grib2: empty, no GRIB message/],
    [one.subarray(0, one.length - 1), /f\.grib2: ends inside a GRIB message \(byte \d+ of the message at 0\)/],
    [Buffer.concat([one, one.subarray(0, 10)]), /ends inside a GRIB message \(byte \d+ of the message at \d+\)/],
    [Buffer.concat([one, Buffer.from('<!DOCTYPE html><html>')]), /message 2 at byte \d+: not a GRIB message \(starts "<!DOCTYPE html><"\)/],
    [Buffer.from('GRIB\x00\x00\x00\x03' + '\x00'.repeat(30), 'latin1'), /message 1 at byte 0: GRIB edition 3 with length 0/],
  ]
  const endMarker = Buffer.from(one)
  endMarker.write('7778', one.length - 4, 'latin1')
  cases.push([endMarker, /message 1 \(bytes 0-\d+\): does not end with "7777"/])
  const overrun = Buffer.from(one)
  overrun.writeUInt32BE(5000, 16) // section 1 claims 5000 bytes
  cases.push([overrun, /message 1 \(bytes 0-\d+\): section 1 at byte 16 has length 5000, past the end of the message/])
  // the message says it is 3 bytes longer than its sections and marker: the "7777" is not where the sections end
  const gap = Buffer.concat([one.subarray(0, one.length - 4), Buffer.from('\x00\x00\x007777', 'latin1')])
  gap.writeBigUInt64BE(BigInt(gap.length), 8)
  cases.push([gap, /sections end at byte \d+, not at the "7777" marker/])
  for (const [bytes, error] of cases) {
    for (const size of [1, 4096])
      assert.throws(
        () => frame(bytes, size),
        (err: Error) => err instanceof InvalidFileError && error.test(err.message),
      )
  }
})

test('a header claiming a 1 PiB message is walked, not allocated', () => {
  const huge = withData(0, 10)
  huge.writeBigUInt64BE(2n ** 50n, 8)
  const framer = new GribFramer('f.grib2', () => assert.fail('no message ends'))
  framer.update(huge.subarray(0, huge.length - 4))
  assert.throws(() => framer.end(), /ends inside a GRIB message/)
})
