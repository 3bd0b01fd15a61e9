// The Benthos peer of the benchmark (bench/benthospeer.py): the Benthos engine, its own
// http_server input, mapping and unarchive processors and sync_response output, configured by
// peer.yaml, plus a franz-go output shaped like Benthos's kafka_franz: each batch produced with
// the bridge's producer settings, answered only once Kafka acknowledged every record.
// kafka_franz itself lives in redpanda-data/connect, whose licence the project does not take.
package main

import (
	"context"
	"errors"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

type franzOutput struct {
	seeds  []string
	client *kgo.Client
}

func (o *franzOutput) Connect(ctx context.Context) error {
	if o.client != nil {
		return nil
	}
	// The bridge's producer settings: acks=all, idempotent (franz-go's default), and no
	// compression (kafka_franz would prefer snappy), so that the brokers' work is the same.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(o.seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return err
	}
	if err := client.Ping(ctx); err != nil {
		client.Close()
		return err
	}
	o.client = client
	return nil
}

func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	records := make([]*kgo.Record, 0, len(batch))
	for _, msg := range batch {
		value, err := msg.AsBytes()
		if err != nil {
			return err
		}
		topic, _ := msg.MetaGet("kafka_topic")
		key, _ := msg.MetaGet("kafka_key")
		records = append(records, &kgo.Record{Topic: topic, Key: []byte(key), Value: value})
	}
	return o.client.ProduceSync(ctx, records...).FirstErr()
}

func (o *franzOutput) Close(ctx context.Context) error {
	if o.client != nil {
		o.client.Close()
	}
	return nil
}

func main() {
	spec := service.NewConfigSpec().Field(service.NewStringListField("seed_brokers"))
	err := service.RegisterBatchOutput("franz", spec,
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			seeds, err := conf.FieldStringList("seed_brokers")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			if len(seeds) == 0 {
				return nil, service.BatchPolicy{}, 0, errors.New("seed_brokers is empty")
			}
			return &franzOutput{seeds: seeds}, service.BatchPolicy{}, 64, nil
		})
	if err != nil {
		panic(err)
	}
	service.RunCLI(context.Background())
}
