'use strict'
// The producer: keyed records (some keys null, some values null or empty)
// with headers (none, several, a repeated key, an empty value) and explicit
// CreateTime timestamps, to two partitions, uncompressed and gzip, from an
// idempotent producer (idempotent: true, maxInFlightRequests: 1) and from a
// plain one (acks=1); then a consumer group reads everything back.
// Prints what was sent (with the produce answers) and what was received.

const { CompressionTypes } = require('kafkajs')
const { makeKafka, waitFor, main, bufToStr, headersToObj } = require('./common')

const BASE_TS = 1700000000000

function messagesFor (tag, partition) {
  const out = []
  for (let i = 0; i < 6; i++) {
    const headers = [
      {},
      { trace: `${tag}-${partition}-${i}` },
      { a: 'x', b: Buffer.from([0xe2, 0x82, 0xac]) }, // "€" as raw bytes
      { rep: ['one', 'two'], empty: '' },
      { a: 'y' },
      {},
    ][i]
    out.push({
      partition,
      key: i === 4 ? null : `key-${tag}-${partition}-${i}`,
      value: i === 5 ? null : i === 3 ? '' : `value-${tag}-${partition}-${i}-${'z'.repeat(i * 40)}`,
      headers,
      timestamp: String(BASE_TS + partition * 100000 + i * 1000 + (tag === 'gzip' ? 50000 : 0)),
    })
  }
  return out
}

main(async (args, state) => {
  const kafka = makeKafka(args)
  const topic = `${args.prefix}-produce`
  const admin = kafka.admin()
  await admin.connect()
  state.cleanups.push(() => admin.disconnect())
  state.step('createTopics')
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })

  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  const plain = kafka.producer({ allowAutoTopicCreation: false })
  await idem.connect()
  state.cleanups.push(() => idem.disconnect())
  await plain.connect()
  state.cleanups.push(() => plain.disconnect())

  const sent = []
  const sends = []
  const plan = [
    ['none', idem, CompressionTypes.None, -1],
    ['gzip', idem, CompressionTypes.GZIP, -1],
    ['plain-gzip', plain, CompressionTypes.GZIP, 1],
  ]
  for (const [tag, producer, compression, acks] of plan) {
    for (const partition of [0, 1]) {
      const messages = messagesFor(tag, partition)
      state.step(`send ${tag} p${partition}`)
      const answer = await producer.send({ topic, messages, compression, acks })
      sends.push({ tag, partition, count: messages.length, answer })
      for (const m of messages) sent.push({ tag, p: partition, k: m.key, v: m.value, h: headersToObj(m.headers), ts: m.timestamp })
    }
  }
  // The idempotent producer once more, a batch spread over both partitions in one request.
  const mixed = [0, 1, 0, 1].map((partition, i) => ({ partition, key: `mixed-${i}`, value: `mixed-value-${i}`, timestamp: String(BASE_TS + 900000 + i) }))
  state.step('send mixed')
  sends.push({ tag: 'mixed', partition: -1, count: mixed.length, answer: await idem.send({ topic, messages: mixed }) })
  for (const m of mixed) sent.push({ tag: 'mixed', p: m.partition, k: m.key, v: m.value, h: {}, ts: m.timestamp })

  const received = []
  const consumer = kafka.consumer({ groupId: `${args.prefix}-produce-g`, heartbeatInterval: 500, sessionTimeout: 10000, maxWaitTimeInMs: 500, allowAutoTopicCreation: false })
  await consumer.connect()
  state.cleanups.push(() => consumer.disconnect())
  await consumer.subscribe({ topic, fromBeginning: true })
  state.step('consume')
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        received.push({
          p: batch.partition,
          o: m.offset,
          k: bufToStr(m.key),
          v: bufToStr(m.value),
          h: headersToObj(m.headers),
          ts: m.timestamp,
          producerId: m.batchContext.producerId,
          firstSequence: m.batchContext.firstSequence,
          timestampType: m.batchContext.timestampType,
          inTransaction: m.batchContext.inTransaction,
        })
      }
    },
  })
  await waitFor(`${sent.length} records consumed (have ${received.length})`, () => received.length >= sent.length, 30000)
  await consumer.stop()
  const offsets = await admin.fetchTopicOffsets(topic)
  return { topic, created, sent, sends, received, offsets }
})
