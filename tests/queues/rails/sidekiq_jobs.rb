# ActiveJob jobs run by a real Sidekiq 6.4 in tests/queues/test_sidekiq.py, and enqueued by
# sidekiq_enqueue.rb. Both find Redis through REDIS_URL, as a Rails app does. Debian packages
# only: ruby-activejob, ruby-sidekiq.
require "json"
require "logger"
require "active_job"
require "sidekiq"
require_relative "immortus_tracked"

ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new($stderr, level: Logger::WARN)

# Waits until the test creates the file it names (at most a minute): "started" for as long as
# the test needs.
class SidekiqBlockingJob < ActiveJob::Base
  def perform(flag)
    deadline = Time.now + 60
    sleep 0.05 until File.exist?(flag) || Time.now > deadline
  end
end

# The same, as a plain Sidekiq worker: lets a test choose the jid.
class SidekiqBlockingWorker
  include Sidekiq::Worker

  def perform(flag)
    SidekiqBlockingJob.new.perform(flag)
  end
end

class SidekiqQuickJob < ActiveJob::Base
  def perform(*); end
end

# Fails every time: Sidekiq puts it in its retry set (next try in 15 s or more).
class SidekiqFailingJob < ActiveJob::Base
  def perform(*)
    raise ArgumentError, "always fails"
  end
end

# Fails with no retry left (sidekiq_enqueue.rb sets its "retry" to 0): Sidekiq's dead set.
class SidekiqDoomedJob < ActiveJob::Base
  def perform(*)
    raise IOError, "doomed\nsecond line"
  end
end

# ActiveJob's own retries: put back in Sidekiq's schedule set, due in an hour.
class SidekiqPatientJob < ActiveJob::Base
  retry_on RuntimeError, wait: 3600, attempts: 3

  def perform(*)
    raise "not yet"
  end
end

# Reports progress through Immortus::Tracked (the docs' exact mode), then waits for the flag.
class SidekiqReportJob < ActiveJob::Base
  include Immortus::Tracked

  def perform(flag)
    immortus_progress(1, 4, "reading")
    immortus_progress(2, 4, "half way")
    SidekiqBlockingJob.new.perform(flag)
    immortus_progress(4, 4)
  end
end

# Fails with no retry left (sidekiq_enqueue.rb sets its "retry" to 0), tracked exactly.
class SidekiqTrackedDoomedJob < ActiveJob::Base
  include Immortus::Tracked

  def perform(*)
    raise IOError, "tracked doom"
  end
end
