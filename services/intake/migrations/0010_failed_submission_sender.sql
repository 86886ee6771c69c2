-- Who sent a failed inbound submission: the portal's broker user (its AMQP user_id, which
-- RabbitMQ validated), NULL when the message named none. A replayed DLQ reference
-- (`sp4n dlq replay`) is resubmitted from this row as that sender, so the complaint's source
-- is still the sender's, never the body's. A broker account name, no personal data.
ALTER TABLE failed_submissions ADD COLUMN sender text;
