"""A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) on 127.0.0.1.

The jars come from Maven Central through ``kafka-pom.xml`` and ``mvn dependency:copy-dependencies``
(Maven keeps its cache in ``~/.m2``, so a second install is offline and fast).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from nlumon.services.process import ManagedProcess, ServiceError, refuse_foreign_listener
from nlumon.settings import Settings

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka-pom.xml")

SERVER_PROPERTIES = """\
# Written by `nlumon services up`; edit the settings, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
# one broker: every internal topic has one replica
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
# topics are created explicitly with their partition counts, never on first use
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=67108864
# at least topics.max_message_bytes (each topic also sets max.message.bytes to it when created)
message.max.bytes={message_max_bytes}
"""

LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
"""


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class KafkaBroker:
    """Install, start, check and stop the local broker described by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.services.run_dir / "kafka"
        self.libs = self.home / "libs"
        self.process = ManagedProcess("kafka", self.home, marker="kafka.Kafka")
        self.host, self.port = _split_host_port(settings.kafka.bootstrap_servers.split(",")[0])

    # -- install ---------------------------------------------------------------------------
    def install(self) -> None:
        """Copy the broker's jars from Maven (a no-op when the pom has not changed)."""
        stamp = self.libs / ".pom-sha256"
        pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
        if stamp.is_file() and stamp.read_text() == pom_hash:
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise ServiceError("Kafka needs Java 17+ and Maven on PATH (apt-get install openjdk-17-jdk-headless maven)")
        log.info("fetching Apache Kafka jars with Maven (cached in ~/.m2 after the first time)")
        shutil.rmtree(self.libs, ignore_errors=True)
        self.libs.mkdir(parents=True)
        command = [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"mvn could not fetch Kafka:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        stamp.write_text(pom_hash)

    def _java(self, main_class: str, *args: str, heap: str | None = None) -> list[str]:
        command = ["java"]
        if heap:
            command += [f"-Xms{heap}", f"-Xmx{heap}"]
        command += [
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-Djava.awt.headless=true",
            "-cp", f"{self.libs}/*",
            main_class, *args,
        ]
        return command

    def configure(self) -> None:
        """Write server.properties and the log config, and format the storage once."""
        data_dir = self.home / "data"
        (self.home / "server.properties").write_text(
            SERVER_PROPERTIES.format(
                host=self.host,
                port=self.port,
                controller_port=self.settings.kafka.controller_port,
                data_dir=data_dir,
                message_max_bytes=broker_message_max_bytes(self.settings),
            )
        )
        (self.home / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log_file=self.home / "server.log"))
        if (data_dir / "meta.properties").is_file():
            return
        cluster_id = _kafka_cluster_id()
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", cluster_id,
                "-c", str(self.home / "server.properties"), "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"kafka StorageTool format failed:\n{result.stdout}\n{result.stderr}")

    # -- run ---------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the broker unless ours is running; wait until it answers. Returns True if started."""
        if self.process.pid() is not None:
            self.wait_ready()
            return False
        refuse_foreign_listener("kafka", self.host, [self.port, self.settings.kafka.controller_port])
        self.install()
        self.configure()
        self.process.start(
            self._java("kafka.Kafka", str(self.home / "server.properties"), heap=self.settings.kafka.heap),
            cwd=self.home,
        )
        self.wait_ready()
        return True

    def wait_ready(self) -> None:
        self.process.wait_until(
            self.answers, timeout_s=self.settings.services.start_timeout_s, what="answer a metadata request"
        )

    def answers(self) -> bool:
        """True when a metadata request to the broker gets an answer."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                request_timeout_ms=3000,
                client_id="nlumon-services",
            )
        except (KafkaError, ValueError, OSError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)

    def status(self) -> dict[str, object]:
        pid = self.process.pid()
        return {
            "service": "kafka",
            "pid": pid,
            "address": self.settings.kafka.bootstrap_servers,
            "answers": pid is not None and self.answers(),
            "log": str(self.home / "server.log"),
        }


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's format (base64url of 16 bytes, no padding)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def faust_leader_topic(app_id: str) -> str:
    """The topic Faust's leader assignor uses (``faust.assignor.leader_assignor``)."""
    return f"{app_id}-__assignor-__leader"


KAFKA_DEFAULT_MESSAGE_MAX_BYTES = 1_048_588  # the broker's own default message.max.bytes


def broker_message_max_bytes(settings: Settings) -> int:
    """The broker's ``message.max.bytes``: never below ``topics.max_message_bytes``."""
    return max(KAFKA_DEFAULT_MESSAGE_MAX_BYTES, settings.topics.max_message_bytes)


def topic_configs(settings: Settings, topic: str | None = None) -> dict[str, str]:
    """Config of a topic we create: the largest record it takes is the producers' ``max_request_size``, and how
    long it keeps records (``retention.ms``: short for the raw-text topics, see ``TopicSettings.retention_of``;
    never the broker's default, which would apply silently).

    >>> from nlumon.settings import Settings
    >>> topic_configs(Settings(), "utterances")["retention.ms"]
    '259200000'
    """
    configs = {"max.message.bytes": str(settings.topics.max_message_bytes)}
    if topic is not None:
        configs["retention.ms"] = str(settings.topics.retention_of(topic))
    return configs


METADATA_WAIT_S = 15.0


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the configured topics that are missing; refuse a topic with another partition count.

    Returns topic -> partition count as it stands on the broker.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = settings.topics.all_topics()
    # Faust elects the monitor's leader through this one-partition topic; it must exist up front.
    wanted[faust_leader_topic(settings.kafka.consumer_group)] = 1
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, client_id="nlumon-services")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=settings.topics.replication_factor,
                     topic_configs=topic_configs(settings, name))
            for name, count in wanted.items()
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        present = [name for name in wanted if name in existing]
        if present:  # topics created before (or with other limits): set the limit and retention, idempotently
            _set_topic_configs(admin, {name: topic_configs(settings, name) for name in present})
        created = {topic.name for topic in missing}
        deadline = time.monotonic() + METADATA_WAIT_S
        while True:  # a topic just created can show no partitions until the broker's metadata catches up
            actual = {
                topic.get("name", topic.get("topic")): len(topic["partitions"])
                for topic in admin.describe_topics(list(wanted))
            }
            if all(actual.get(name) for name in created) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        admin.close()
    wrong = {name: (count, actual.get(name)) for name, count in wanted.items() if actual.get(name) != count}
    if wrong:
        details = ", ".join(f"{name}: want {want}, broker has {have}" for name, (want, have) in wrong.items())
        raise ServiceError(f"topics exist with other partition counts ({details}); recreate them or change settings")
    return actual


def _set_topic_configs(admin, configs: dict[str, dict[str, str]]) -> None:
    """Set each topic's ``configs`` on existing topics; a failure is logged.

    kafka-python sends IncrementalAlterConfigs (brokers >= 2.3): the keys given are SET, other topic settings
    stay. (On an older broker it falls back to AlterConfigs and first reads the topic's other non-default keys.)
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        results = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, dict(values)) for name, values in configs.items()])
    except Exception as error:  # the topics work with the broker's limits meanwhile
        log.warning("could not set %s on existing topics: %s", configs, error)
        return
    failed = {name: outcome for name, outcome in results.get("topic", {}).items() if outcome != "OK"}
    if failed:
        log.warning("could not set topic configs %s: %s", {name: configs[name] for name in failed}, failed)
