#include "cli/demo.h"

#include <cstdio>

#include "cli/progress.h"
#include "fathom/database.h"
#include "util/vector_file.h"

namespace fathom::cli {
namespace {

constexpr char kDatasetDir[] = "/usr/share/datasets/fashion-mnist/";
constexpr const char* kLabelNames[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                         "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
constexpr size_t kBatch = 1000;

}  // namespace

Status LoadDemo(const std::string& data_dir) {
  DatabaseOptions options;
  options.durability = Durability::kBuffered;  // a demo load; Close() makes it durable
  FATHOM_ASSIGN_OR_RETURN(auto db, Database::Open(data_dir, options));
  if (db->GetCollection(kDemoCollection).ok()) return Status::OK();
  struct Split {
    const char* name;
    const char* images;
    const char* labels;
  };
  const Split splits[] = {{"train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
                          {"test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
  CollectionSpec spec;
  spec.name = kDemoCollection;
  spec.vectors.push_back({"", 784, Metric::kL2, "HNSW16,SQ8"});
  spec.indexed_fields = {{"label", FieldType::kInteger}, {"split", FieldType::kKeyword}};
  // What the vectors are, for people and the web console (which draws them as 28x28 images).
  spec.metadata =
      R"({"description":"Fashion-MNIST: 70,000 grey 28x28 images of clothing, 10 classes",)"
      R"("model":{"dimension":784,"name":"raw pixels","version":"28x28 grey, 0-255"}})";
  FATHOM_ASSIGN_OR_RETURN(std::shared_ptr<Collection> collection, db->CreateCollection(spec));
  uint64_t next_id = 0;
  for (const Split& split : splits) {
    FATHOM_ASSIGN_OR_RETURN(Matrix images, ReadIdxImages(std::string(kDatasetDir) + split.images));
    FATHOM_ASSIGN_OR_RETURN(std::vector<int> labels,
                            ReadIdxLabels(std::string(kDatasetDir) + split.labels));
    if (labels.size() != images.rows || images.cols != 784) {
      return Status::Corruption(std::string("Fashion-MNIST ") + split.name +
                                " images and labels do not match");
    }
    Progress progress(std::string("loading demo (") + split.name + ")", images.rows, stderr);
    for (size_t b = 0; b < images.rows; b += kBatch) {
      size_t n = std::min(kBatch, images.rows - b);
      std::vector<Record> records(n);
      for (size_t i = 0; i < n; ++i) {
        size_t row = b + i;
        records[i].id = next_id++;
        records[i].vectors[""].assign(images.data.begin() + row * 784,
                                      images.data.begin() + (row + 1) * 784);
        int label = labels[row];
        records[i].payload = "{\"label\":" + std::to_string(label) + ",\"label_name\":\"" +
                             kLabelNames[label % 10] + "\",\"split\":\"" + split.name + "\"}";
      }
      FATHOM_RETURN_IF_ERROR(collection->Upsert(records));
      progress.Update(b + n, b + n);
    }
    progress.Finish();
  }
  std::fprintf(stderr, "loaded %llu Fashion-MNIST images into collection '%s'\n",
               static_cast<unsigned long long>(next_id), kDemoCollection);
  return db->Close();
}

}  // namespace fathom::cli
