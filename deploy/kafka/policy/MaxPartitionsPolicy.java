package localkafka;

import java.util.Map;
import org.apache.kafka.common.errors.PolicyViolationException;
import org.apache.kafka.server.policy.CreateTopicPolicy;

/**
 * A platform team's quota, as a broker-side create-topic policy: no topic may have more
 * partitions than {@code localkafka.policy.max.partitions}. localkafka.py compiles it when a
 * broker is asked for a topic policy; Kafka ships no implementation of its own.
 */
public final class MaxPartitionsPolicy implements CreateTopicPolicy {
    static final String MAX_PARTITIONS = "localkafka.policy.max.partitions";

    private int maxPartitions = Integer.MAX_VALUE;

    @Override
    public void configure(Map<String, ?> configs) {
        Object value = configs.get(MAX_PARTITIONS);
        if (value != null) {
            maxPartitions = Integer.parseInt(value.toString().trim());
        }
    }

    @Override
    public void validate(RequestMetadata request) throws PolicyViolationException {
        Integer partitions = request.numPartitions();
        if (partitions == null && request.replicasAssignments() != null) {
            partitions = request.replicasAssignments().size();
        }
        if (partitions != null && partitions > maxPartitions) {
            throw new PolicyViolationException(
                "Topic " + request.topic() + " asks for " + partitions
                    + " partitions; this cluster's policy allows at most " + maxPartitions);
        }
    }

    @Override
    public void close() {}
}
