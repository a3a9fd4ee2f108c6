'use strict'
// Auto-creation, acks=0 and seek: a producer with allowAutoTopicCreation
// sends to a topic that does not exist yet (Metadata creates it, one
// partition), then once with acks=0 (no answer) and once more with acks=-1;
// a group consumer subscribed from the latest offset seeks to offset 1 and
// reads the last two records. Prints the produce answers, the offsets and
// what the consumer read.

const { makeKafka, waitFor, main, bufToStr } = require('./common')

main(async (args, state) => {
  const kafka = makeKafka(args)
  const topic = `${args.prefix}-auto`
  const r = { topic }
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  state.cleanups.push(() => producer.disconnect())
  r.first = await producer.send({ topic, messages: [{ key: 'k0', value: 'a' }] })
  r.acks0 = await producer.send({ topic, acks: 0, messages: [{ key: 'k1', value: 'b' }] })
  r.last = await producer.send({ topic, messages: [{ key: 'k2', value: 'c' }] })
  const admin = kafka.admin()
  await admin.connect()
  state.cleanups.push(() => admin.disconnect())
  r.metadata = (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.map(p => p.partitionId)
  r.offsets = await admin.fetchTopicOffsets(topic)
  const consumer = kafka.consumer({ groupId: `${args.prefix}-seek-g`, heartbeatInterval: 300, sessionTimeout: 10000, maxWaitTimeInMs: 300 })
  await consumer.connect()
  state.cleanups.push(() => consumer.disconnect())
  await consumer.subscribe({ topic, fromBeginning: false })
  const seen = []
  await consumer.run({ eachMessage: async ({ partition, message }) => { seen.push({ p: partition, o: message.offset, k: bufToStr(message.key), v: bufToStr(message.value) }) } })
  consumer.seek({ topic, partition: 0, offset: '1' })
  await waitFor('the two records from offset 1', () => seen.length >= 2, 20000)
  r.seen = seen
  return r
})
