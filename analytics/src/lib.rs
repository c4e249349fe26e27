//! Request-log ingestion, analytics queries and usage metering (DESIGN §9). Empty until the
//! analytics issue: nothing is logged or metered yet.
